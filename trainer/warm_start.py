"""Start a training run from a trained model's weights (`puf train --init RUN_OR_BUNDLE`).

A run folder gives its Keras model (model.keras). A bundle holds no Keras weights (the
shipped one: model_int8.tflite and model.onnx), so its float ONNX model is read back into
the same Keras network (`trainer.network.build_network` with the manifest's model.config):
each convolution or dense layer of the network takes the ONNX layer of the same kind,
shape and activation, in graph order. tf2onnx folded batch normalisation into the
convolutions, so a layer's batch norm gets the folded scale through its kernel and its
shift through beta; its moving statistics are then measured on the new data's crops and
compensated (gamma = sqrt(var + eps), beta += mean), which leaves inference exactly as
before and makes training-mode normalisation start where the original model was. The
result must match onnxruntime on real crops (embedding cosine >= 0.9999) or it is refused.

Kept: the backbone and the embedding head, and from a run folder the ArcFace centres of the
labels it trained on (a registry that gained a batch since keeps them; the new labels' centres
start at their mean embedding, `trainer.train`). New: the pattern head when the new data's
pattern classes differ from the model's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.bundle_format import MANIFEST, Manifest, verify_files
from edge_app.errors import PufError
from edge_app.pattern_set import PatternSet
from edge_app.preprocess import Preprocess
from edge_app.runtime import shipped_bundle
from trainer.metrics import row_cosine
from trainer.network import build_network
from trainer.pattern_sets import bundle_pattern_set, folder_pattern_set

ARCHITECTURE = ("backbone", "preprocess", "embedding_dim", "head_channels", "pattern_mlp")
PARITY_COSINE = 0.9999  # the bound export holds ONNX to
CENTRES_KEY = "centres/.ATTRIBUTES/VARIABLE_VALUE"  # trainer.train's checkpoint of the ArcFace centres
SHIPPED = "default"  # `--init default`: the bundle shipped in the package


@dataclass
class InitSource:
    """What a run starts from: a run folder or a bundle, its architecture and classes."""

    path: Path
    kind: str  # "run" | "bundle"
    architecture: dict
    pattern_set: PatternSet  # the glyphs its pattern head reads

    def record(self) -> dict:
        return {"from": str(self.path), "kind": self.kind, "pattern_set": self.pattern_set.describe()}


def init_path(name: str | Path) -> Path:
    """`--init`'s folder: the shipped bundle by its name (`default`, so a wheel install fine-tunes it
    with no checkout), unless a folder of that name is here; any other value is a path."""
    path = Path(name)
    return shipped_bundle() if str(name) == SHIPPED and not path.exists() else path


def read_init(path: str | Path) -> InitSource:
    """The run folder or bundle `path` names (`init_path`; no TensorFlow needed)."""
    path = init_path(path)
    if (path / "model.keras").exists() and (path / "config.json").exists():
        config = json.loads((path / "config.json").read_text())
        return InitSource(path, "run", {k: config[k] for k in ARCHITECTURE}, folder_pattern_set(path))
    if (path / MANIFEST).exists():
        manifest = Manifest.read(path)
        verify_files(path, manifest)
        config = (manifest.model.extra.get("config") if manifest.model else None) or {}
        missing = [k for k in ARCHITECTURE if k not in config]
        if missing:
            raise PufError(f"the bundle {path} does not say how its network is built (model.config lacks "
                           f"{missing}): it cannot be fine-tuned")
        if not (path / "model.onnx").exists():
            raise PufError(f"the bundle {path} has no model.onnx: its float weights are needed to fine-tune "
                           "(an int8 TFLite model cannot give them back); export it with --formats including onnx")
        return InitSource(path, "bundle", {k: config[k] for k in ARCHITECTURE}, bundle_pattern_set(path, manifest))
    raise PufError(f"--init {path}: neither a training run (model.keras + config.json) nor a bundle "
                   f"(manifest.json); '{SHIPPED}' names the shipped bundle")


def check_architecture(source: InitSource, config) -> None:
    """Refuse a run whose network differs from the one it starts from."""
    differs = [f"{k} {source.architecture[k]!r} (this run: {getattr(config, k)!r})"
               for k in ARCHITECTURE if source.architecture[k] != getattr(config, k)]
    if differs:
        raise PufError(f"--init {source.path} was built with " + "; ".join(differs) +
                       ": a run that starts from it takes its architecture (drop those settings)")


def warm_start(model, source: InitSource, pattern_set: PatternSet, inputs: np.ndarray) -> dict:
    """Set `model` (built for `pattern_set`'s classes) from `source`; `inputs` are
    preprocessed crops of the new data (for the ONNX route's statistics and parity). The
    pattern head is kept only for the very same glyphs in the same order. Returns what was
    done, for the run's records."""
    keep_head = pattern_set.sha256 == source.pattern_set.sha256
    record = {**source.record(), "pattern_head": "kept" if keep_head else "re-initialised",
              "identity_centres": "new"}
    if source.kind == "run":
        import keras

        trained = keras.models.load_model(source.path / "model.keras", compile=False)
    else:
        a = source.architecture
        trained = build_network(a["backbone"], Preprocess.from_dict(a["preprocess"]).input_shape,
                                a["embedding_dim"], len(source.pattern_set.names), a["head_channels"],
                                a["pattern_mlp"])
        record["parity"] = load_onnx_weights(trained, source.path / "model.onnx", inputs)
    copy_weights(trained, model, keep_pattern_head=keep_head)
    return record


def init_centres(source: InitSource) -> dict[str, np.ndarray]:
    """The trained identity centre of each label the init run trained on, from its last
    checkpoint and split.json ({} for a bundle, which has none)."""
    import tensorflow as tf

    if source.kind != "run":
        return {}
    latest = tf.train.latest_checkpoint(str(source.path / "ckpt"))
    split = source.path / "split.json"
    if latest is None or not split.exists():
        return {}
    labels = json.loads(split.read_text())["train"]
    centres = tf.train.load_variable(latest, CENTRES_KEY)
    if len(centres) != len(labels):
        raise PufError(f"--init {source.path}: its checkpoint holds {len(centres)} identity centres for the "
                       f"{len(labels)} training labels of its split.json: the run folder is inconsistent")
    return dict(zip(labels, centres, strict=True))


def copy_weights(source, target, keep_pattern_head: bool) -> None:
    """Every layer's weights by name (the backbone as one nested model), except the pattern
    head's when it is to be learnt anew."""
    for layer in target.layers:
        if not layer.weights or (not keep_pattern_head and layer.name.startswith("pattern_")):
            continue
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise PufError(f"the init model has no layer {layer.name!r}: it is another network") from None
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise PufError(f"the init model's layer {layer.name!r} has other shapes: it is another network")
        layer.set_weights(weights)


# ---- the ONNX route ---------------------------------------------------------------
def _onnx_units(path: Path) -> list[dict]:
    """Every Conv / MatMul of the ONNX graph in order, with the per-channel scale and
    shift of the constant Mul/Add chain after it (folded batch norm and bias), and
    whether a Relu follows."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list] = defaultdict(list)
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        for name in node.input:
            consumers[name].append(node)
    units = []
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in consts:
            weight = consts[node.input[1]]
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group == 1:
                kind, kernel = "conv", weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            elif group == weight.shape[0] and weight.shape[1] == 1:
                kind, kernel = "depthwise", weight.transpose(2, 3, 0, 1)  # C1HW -> HWC1
            else:
                raise PufError(f"{path}: a grouped convolution ({group} groups) has no Keras counterpart here")
        elif node.op_type == "MatMul" and node.input[1] in consts:
            kind, kernel = "dense", consts[node.input[1]]
        else:
            continue
        channels = kernel.shape[2] if kind == "depthwise" else kernel.shape[-1]
        scale = np.ones(channels, np.float64)
        shift = (consts[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2]
                 else np.zeros(channels))
        out = node.output[0]
        while len(consumers[out]) == 1 and consumers[out][0].op_type in ("Mul", "Add"):
            step = consumers[out][0]
            other = [name for name in step.input if name != out]
            if len(other) != 1 or other[0] not in consts or consts[other[0]].size not in (1, channels):
                break
            value = consts[other[0]].reshape(-1).astype(np.float64)
            if step.op_type == "Mul":
                scale, shift = scale * value, shift * value
            else:
                shift = shift + value
            out = step.output[0]
        relu = len(consumers[out]) == 1 and consumers[out][0].op_type == "Relu"
        units.append({"kind": kind, "kernel": kernel, "scale": scale, "shift": shift, "relu": relu,
                      "name": node.name})
    return units


def _keras_units(model) -> list[dict]:
    """Every Conv2D / DepthwiseConv2D / Dense in graph order (nested models included),
    with the batch norm that takes its output and whether a ReLU follows."""
    import keras

    layers = []

    def walk(m, owner):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer, layer)
            else:
                layers.append((layer, owner))

    walk(model, None)
    units = []
    for layer, owner in layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kind = "depthwise"
        elif isinstance(layer, keras.layers.Conv2D):
            kind = "conv"
        elif isinstance(layer, keras.layers.Dense):
            kind = "dense"
        else:
            continue
        after = [n.operation for n in layer._outbound_nodes]
        bn = after[0] if len(after) == 1 and isinstance(after[0], keras.layers.BatchNormalization) else None
        if bn is not None:
            after = [n.operation for n in bn._outbound_nodes]
        relu = (getattr(layer, "activation", None) is keras.activations.relu
                or (len(after) == 1 and isinstance(after[0], keras.layers.ReLU)))
        units.append({"kind": kind, "layer": layer, "bn": bn, "relu": relu, "owner": owner})
    return units


def load_onnx_weights(model, onnx_path: Path, inputs: np.ndarray) -> dict:
    """Read the ONNX model's float weights into `model` (the same network, built by
    `build_network`), measure batch-norm statistics on `inputs` and check parity with
    onnxruntime on them; refuses (PufError) when they do not match."""
    import keras

    onnx_units, keras_units = _onnx_units(onnx_path), _keras_units(model)
    if len(onnx_units) != len(keras_units):
        raise PufError(f"{onnx_path} has {len(onnx_units)} convolution/dense layers, the network "
                       f"{len(keras_units)}: it is another architecture")
    free = list(onnx_units)
    for unit in keras_units:
        layer = unit["layer"]
        shape = tuple(layer.kernel.shape)
        found = next((i for i, o in enumerate(free) if o["kind"] == unit["kind"] and o["kernel"].shape == shape
                      and o["relu"] == unit["relu"]), None)
        if found is None:
            raise PufError(f"{onnx_path}: no layer matches the network's {layer.name} ({unit['kind']} {shape})")
        match = free.pop(found)
        axis = 2 if unit["kind"] == "depthwise" else -1
        view = [1] * match["kernel"].ndim
        view[axis] = -1
        layer.kernel.assign((match["kernel"] * match["scale"].reshape(view)).astype(np.float32))
        if layer.use_bias:
            layer.bias.assign(np.zeros(layer.bias.shape, np.float32))
        unit["shift"] = match["shift"]
        bn = unit["bn"]
        if bn is not None:  # identity plus the shift, until its statistics are measured below
            bn.moving_mean.assign(np.zeros(bn.moving_mean.shape, np.float32))
            bn.moving_variance.assign(np.full(bn.moving_variance.shape, 1 - bn.epsilon, np.float32))
            if bn.scale:
                bn.gamma.assign(np.ones(bn.gamma.shape, np.float32))
            bn.beta.assign(match["shift"].astype(np.float32))
        else:
            if not layer.use_bias:
                raise PufError(f"{onnx_path}: the network's {layer.name} has no bias for the ONNX layer's shift")
            layer.bias.assign(match["shift"].astype(np.float32))
    # batch norms: measure the statistics of each layer's output (the network now computes
    # what the ONNX model does), then compensate them, which leaves inference as it is
    with_bn = [u for u in keras_units if u["bn"] is not None]
    for owner in {id(u["owner"]): u["owner"] for u in with_bn}.values():
        units = [u for u in with_bn if u["owner"] is owner]
        # build_network feeds the crop straight into the backbone, so a nested model's
        # input is the network's input
        probe = keras.Model((owner or model).inputs, [u["layer"].output for u in units])
        outputs = probe.predict(inputs, batch_size=64, verbose=0)
        for unit, z in zip(units, outputs if isinstance(outputs, list) else [outputs], strict=True):
            z = z.reshape(-1, z.shape[-1]).astype(np.float64)
            mean, var = z.mean(0), z.var(0)
            bn = unit["bn"]
            eps = bn.epsilon
            bn.moving_mean.assign(mean.astype(np.float32))
            if bn.scale:
                bn.moving_variance.assign(var.astype(np.float32))
                bn.gamma.assign(np.sqrt(var + eps).astype(np.float32))
            else:
                bn.moving_variance.assign(np.full(var.shape, 1 - eps, np.float32))
            bn.beta.assign((unit["shift"] + mean).astype(np.float32))
    return onnx_parity(model, onnx_path, inputs)


def onnx_parity(model, onnx_path: Path, inputs: np.ndarray) -> dict:
    """Keras against onnxruntime on the same inputs; refuses below PARITY_COSINE."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: inputs.astype(np.float32)}),
                   strict=True))
    out = model(inputs, training=False)
    cos = row_cosine(np.asarray(out["embedding"], np.float64), got["embedding"].astype(np.float64))
    agree = float(np.mean(np.asarray(out["pattern_logits"]).argmax(1) == got["pattern_logits"].argmax(1)))
    report = {"cosine_worst": float(cos.min()), "cosine_mean": float(cos.mean()),
              "pattern_agreement": agree, "samples": int(len(inputs))}
    if cos.min() < PARITY_COSINE or agree < 1.0:
        raise PufError(f"the weights read from {onnx_path} do not reproduce it (embedding cosine worst "
                       f"{cos.min():.6f}, bound {PARITY_COSINE}; pattern agreement {agree:.2%}): not fine-tuning "
                       "from it")
    return report
