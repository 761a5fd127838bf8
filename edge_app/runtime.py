"""The device-side model runner: one network, two heads, from a TFLite or ONNX file.

No TensorFlow here, ever. TFLite files run on LiteRT (`ai_edge_litert`), with the old
`tflite_runtime` only as a fallback import for old Raspberry Pi images (it is dead at
2.14, fails under numpy 2 and clashes with TensorFlow in one process); ONNX files run on
onnxruntime. Inputs are what `edge_app.preprocess.preprocess` makes (float32); an int8
model's input and output quantisation is handled here.

    runner = ModelRunner.from_bundle(default_bundle())          # model_int8.tflite
    out = runner.run(preprocess_batch(crops, runner.preprocess))
    out.embedding        # (N, D) float32, L2-normalised
    out.pattern_logits   # (N, classes) float32; out.pattern_probabilities() softmaxes
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from edge_app.bundle_format import FORMAT_FILES, Manifest, verify_files
from edge_app.errors import PufError
from edge_app.preprocess import Preprocess, dequantize, quantize

# More threads than any device has cores only costs: ONNX Runtime starts every one (100000
# hung a 2-core machine for minutes), and LiteRT's thread pool is not built for thousands.
MAX_THREADS = 64


def shipped_bundle() -> Path:
    """The default model shipped in the package (models/default, package data, so a wheel
    install has it too): what `puf verify` uses unless told otherwise, and what `puf train
    --init default` fine-tunes."""
    return Path(str(files("models") / "default"))


def default_bundle() -> Path:
    """The bundle the device uses unless told otherwise: $PUF_BUNDLE, else the shipped one."""
    if os.environ.get("PUF_BUNDLE"):
        return Path(os.environ["PUF_BUNDLE"])
    return shipped_bundle()


@dataclass
class ModelOutput:
    embedding: np.ndarray  # (N, D) float32, L2-normalised
    pattern_logits: np.ndarray  # (N, classes) float32

    def pattern_probabilities(self) -> np.ndarray:
        z = self.pattern_logits - self.pattern_logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def model_path(bundle: Path, manifest: Manifest, fmt: str | None = None) -> Path:
    """The bundle's model file in format `fmt` (None: its default); PufError when the bundle has none."""
    fmt = fmt or manifest.model_format
    if fmt not in FORMAT_FILES:
        raise PufError(f"model format must be one of {sorted(FORMAT_FILES)}, got {fmt!r}")
    if FORMAT_FILES[fmt] not in manifest.file_entries:
        raise PufError(f"the bundle {bundle} has no {fmt} model ({FORMAT_FILES[fmt]})")
    return Path(bundle) / FORMAT_FILES[fmt]


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _tflite_interpreter(path: str, num_threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # old Pi images only
        except ImportError:
            raise PufError("running a TFLite model needs LiteRT: pip install 'puf-labels[device]' "
                           "(ai-edge-litert)") from None
    try:
        return Interpreter(model_path=path, num_threads=num_threads)
    except (ValueError, RuntimeError) as error:
        raise PufError(f"cannot load the TFLite model {path}: {error}") from None


class ModelRunner:
    """Runs a fingerprint model file (`.tflite` float or int8, or `.onnx`)."""

    def __init__(self, path: Path, num_threads: int = 2, embedding_dim: int | None = None,
                 pattern_classes: int | None = None,
                 preprocess: Preprocess | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise PufError(f"no model file at {self.path}")
        if not isinstance(num_threads, int) or not 1 <= num_threads <= MAX_THREADS:
            raise PufError(f"model threads must be 1-{MAX_THREADS}, got {num_threads!r}")
        self.num_threads = num_threads
        self.preprocess = preprocess or Preprocess()
        self._dims = (embedding_dim, pattern_classes)
        if self.path.suffix == ".onnx":
            self.format = "onnx"
            self._load_onnx()
        elif self.path.suffix == ".tflite":
            self._load_tflite()
        else:
            raise PufError(f"{self.path.name}: a model file must be .tflite or .onnx")
        if preprocess is not None and tuple(self.input_shape) != preprocess.input_shape:
            raise PufError(f"{self.path.name} takes {tuple(self.input_shape)} inputs; the preprocessing gives "
                           f"{preprocess.input_shape}: the manifest's input size is not the model's")

    @classmethod
    def from_bundle(cls, bundle: Path, fmt: str = "int8", num_threads: int = 2,
                    check: bool = True) -> ModelRunner:
        """The bundle's model in format `fmt` (int8, float or onnx), with the bundle's
        preprocessing and head sizes; `check` verifies the file's checksum first."""
        bundle = Path(bundle)
        manifest = Manifest.read(bundle)
        path = model_path(bundle, manifest, fmt)
        if check:
            verify_files(bundle, manifest, [path.name])
        return cls.of_manifest(bundle, manifest, fmt, num_threads)

    @classmethod
    def of_manifest(cls, bundle: Path, manifest: Manifest, fmt: str | None = None,
                    num_threads: int = 2) -> ModelRunner:
        """The model of the bundle folder `bundle` already read as `manifest` (not read again),
        in format `fmt` (None: the bundle's default), with its preprocessing and head sizes."""
        return cls(model_path(bundle, manifest, fmt), num_threads, manifest.embedding_dim,
                   len(manifest.pattern_classes or []), Preprocess.from_dict(manifest.preprocessing))

    # ---- loading -----------------------------------------------------------------------
    def _load_onnx(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise PufError("running an ONNX model needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise PufError(f"cannot load the ONNX model {self.path}: {error}") from None
        self._input_name = self._session.get_inputs()[0].name
        outputs = [(o.name, o.shape[-1]) for o in self._session.get_outputs()]
        order = self._assign([name for name, _ in outputs], [dim for _, dim in outputs])
        self._check_sizes([outputs[i][1] for i in order])
        self._onnx_outputs = [outputs[i][0] for i in order]
        self.input_shape = tuple(self._session.get_inputs()[0].shape[1:])

    def _load_tflite(self) -> None:
        self._interp = _tflite_interpreter(str(self.path), self.num_threads)
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        self._input = inp
        self.format = "int8" if inp["dtype"] in (np.int8, np.uint8) else "float"
        self.input_shape = tuple(int(d) for d in inp["shape"][1:])
        outs = self._interp.get_output_details()
        names = [o["name"] for o in outs]
        try:  # the signature names the outputs as the network did
            sig = self._interp.get_signature_runner()
            by_index = {d["index"]: n for n, d in sig.get_output_details().items()}
            names = [by_index.get(o["index"], o["name"]) for o in outs]
        except (ValueError, RuntimeError, KeyError, AttributeError):
            pass
        order = self._assign(names, [int(o["shape"][-1]) for o in outs])
        self._check_sizes([int(outs[i]["shape"][-1]) for i in order])
        self._outputs = [outs[i] for i in order]
        self._batch = int(inp["shape"][0])

    def _assign(self, names: list[str], dims: list[int]) -> list[int]:
        """Indices of (embedding, pattern logits) among the outputs: by name, else by size."""
        if len(names) != 2:
            raise PufError(f"{self.path.name}: expected 2 outputs (embedding, pattern logits), "
                           f"found {len(names)}")
        for i, name in enumerate(names):
            if "embedding" in name.lower():
                return [i, 1 - i]
            if "pattern" in name.lower():
                return [1 - i, i]
        emb_dim, classes = self._dims
        if emb_dim is not None and emb_dim != classes:
            for i, dim in enumerate(dims):
                if dim == emb_dim:
                    return [i, 1 - i]
        raise PufError(f"{self.path.name}: cannot tell the embedding from the pattern output "
                       f"(outputs {names} of sizes {dims}); give the embedding size")

    def _check_sizes(self, found: list) -> None:
        """The model's embedding and pattern outputs are as wide as the bundle says (a signed
        embedding_dim of 7 on a 128-d model is refused here, not at the first search)."""
        for what, wanted, got in zip(("embedding size", "pattern classes"), self._dims, found, strict=True):
            if wanted is not None and got != wanted:
                raise PufError(f"{self.path.name} outputs {got} {what}; the manifest says {wanted}")

    # ---- running -----------------------------------------------------------------------
    def run(self, inputs: np.ndarray) -> ModelOutput:
        """Preprocessed inputs (N, H, W, C) or one (H, W, C) -> embeddings and logits."""
        x = np.asarray(inputs, np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != tuple(self.input_shape):
            raise PufError(f"model input must be {tuple(self.input_shape)}, got {x.shape[1:]}")
        if self.format == "onnx":
            emb, logits = self._session.run(self._onnx_outputs, {self._input_name: x})
            return ModelOutput(_l2(emb), np.asarray(logits, np.float32))
        return self._run_tflite(x)

    def _run_tflite(self, x: np.ndarray) -> ModelOutput:
        n = len(x)
        if n != self._batch:
            self._interp.resize_tensor_input(self._input["index"], [n, *self.input_shape])
            self._interp.allocate_tensors()
            self._input = self._interp.get_input_details()[0]
            outs = {o["index"]: o for o in self._interp.get_output_details()}
            self._outputs = [outs[o["index"]] for o in self._outputs]
            self._batch = n
        if self.format == "int8":
            scale, zero = self._input["quantization"]
            x = quantize(x, scale, zero, self._input["dtype"])
        self._interp.set_tensor(self._input["index"], x)
        self._interp.invoke()
        results = []
        for out in self._outputs:
            y = self._interp.get_tensor(out["index"])
            if out["dtype"] in (np.int8, np.uint8):
                y = dequantize(y, *out["quantization"])
            results.append(np.asarray(y, np.float32))
        return ModelOutput(_l2(results[0]), results[1])
