"""What can be known about a Raspberry Pi without one: the model's work and the memory at scale.

    python tools/pi_figures.py                        # models/default, 4,000,000 labels
    python tools/pi_figures.py --bundle bundles/b1 --labels 1e7 --json

* multiply-accumulates a label: every Conv (full and depthwise) and MatMul/Gemm of the bundle's
  ONNX model, output elements times the weights each one reads (the int8 TFLite file is the
  same network); element-wise ops (ReLU, Add, Mul) are left out;
* memory: the index `puf enroll` plans for that many labels (`trainer.index_build.plan_index`,
  within the default 1,400 MB budget), as one index over the whole database and as one shard a
  pattern class, plus the label id map (13-byte ids); the model file on top. Thumbnails
  (`puf enroll --thumbnails PX`, PX*PX bytes a label) are not counted: at millions of labels
  leave them out.

Needs the onnx package (the trainer extra). No timing here: Pi timings are measured on a Pi.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ID_MAP_BYTES = 13  # a label id such as B0001-0123-07, stored fixed width (numpy S13) in the shard's ids.npy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from edge_app.runtime import shipped_bundle

    parser.add_argument("--bundle", type=Path, default=shipped_bundle(),
                        help="bundle with a model.onnx (default models/default)")
    parser.add_argument("--labels", type=float, default=4e6, help="labels enrolled, one vector each (default 4e6)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from edge_app.bundle_format import Manifest

    manifest = Manifest.read(args.bundle)
    macs = model_macs(args.bundle / "model.onnx")
    figures = {"model": manifest.model.name if manifest.model else None, "input": manifest.extra["input"]["shape"],
               "macs_per_label": macs, "model_int8_bytes": (args.bundle / "model_int8.tflite").stat().st_size,
               "memory": memory(int(args.labels), int(manifest.embedding_dim or 0),
                                len(manifest.pattern_classes or []))}
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"{figures['model']}, input {figures['input']}: {sum(macs.values()) / 1e6:.1f} M multiply-accumulates "
          "a label (" + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in macs.items()) + ")")
    for layout, m in figures["memory"].items():
        print(f"{int(args.labels):,} labels, {layout}: {m['index']} {m['bytes_per_vector']:.1f} + "
              f"{ID_MAP_BYTES} bytes a label = {m['mb']:,.0f} MB (+ the {figures['model_int8_bytes'] / 1e6:.1f} MB "
              "int8 model)")
    return 0


def model_macs(path: Path) -> dict[str, int]:
    """Multiply-accumulates of one inference, by kind of layer (batch 1)."""
    import math

    import onnx
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.input, *graph.output]}
    weights = {t.name: list(t.dims) for t in graph.initializer}
    macs = {"conv": 0, "depthwise conv": 0, "dense": 0}
    for node in graph.node:
        if node.op_type == "Conv":
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            kind = "depthwise conv" if groups > 1 else "conv"
            # each output element reads (C_in / groups) * kh * kw weights: the weight's dims after the first
            macs[kind] += math.prod(shapes[node.output[0]]) * math.prod(weights[node.input[1]][1:])
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in weights:
            w = weights[node.input[1]]
            transposed = any(a.name == "transB" and a.i for a in node.attribute)
            macs["dense"] += math.prod(shapes[node.output[0]]) * (w[1] if transposed else w[0])
    return macs


def memory(labels: int, dim: int, classes: int) -> dict[str, dict]:
    """Bytes of the planned indexes and their id maps, as one index and as one shard a pattern class."""
    from trainer.enroll import DEFAULT_BUDGET_MB  # `puf enroll --memory-mb`'s default
    from trainer.index_build import plan_index

    budget = DEFAULT_BUDGET_MB * 1e6 / labels - ID_MAP_BYTES
    out = {}
    for layout, n, shards in (("one index", labels, 1), (f"{classes} pattern shards", labels // classes, classes)):
        plan = plan_index(n, dim, budget)
        out[layout] = {"index": plan.factory, "bytes_per_vector": plan.bytes_per_vector,
                       "mb": shards * n * (plan.bytes_per_vector + ID_MAP_BYTES) / 1e6}
    return out


if __name__ == "__main__":
    sys.exit(main())
