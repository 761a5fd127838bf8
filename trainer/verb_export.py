"""`puf export`: a trained run as a device bundle (int8 and float TFLite, ONNX, manifest), checked
against the Keras model by the device's own runner.

Only the standard library at module level; TensorFlow is imported when the verb runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.arguments import output_path, probability
from edge_app.verbs import Verb
from trainer import quiet_tensorflow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a training run folder")
    parser.add_argument("--out", type=output_path, required=True, help="bundle folder to write")
    parser.add_argument("--formats", default="int8,float,onnx",
                        help="comma-separated: int8, float, onnx (default: all)")
    parser.add_argument("--far", type=probability, default=1e-3,
                        help="FAR the provisional threshold is calibrated for (default 1e-3)")
    parser.add_argument("--no-strict", action="store_true",
                        help="write the bundle even when a parity bound is missed")
    parser.add_argument("--version", help="model version (default: a timestamp)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args: argparse.Namespace) -> int:
    quiet_tensorflow()
    from trainer.export import export

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    manifest = export(args.run_dir, args.out, formats, args.far, strict=not args.no_strict,
                      model_version=args.version)
    if args.json:
        print(json.dumps(manifest, indent=1))
        return 0
    print(f"bundle {args.out}: {manifest['model']['name']} {manifest['model']['version']}")
    print(f"{'file':<20}{'bytes':>10}  {'cos mean':>9} {'cos worst':>9} {'max abs':>9} {'pattern':>8}")
    for fmt, name in (("int8", "model_int8.tflite"), ("float", "model_float.tflite"),
                      ("onnx", "model.onnx")):
        if fmt in manifest["parity"]:
            p = manifest["parity"][fmt]
            print(f"{name:<20}{manifest['files'][name]['bytes']:>10}  {p['cosine_mean']:>9.5f} "
                  f"{p['cosine_worst']:>9.5f} {p['embedding_max_abs']:>9.2e} "
                  f"{p['pattern_agreement']:>8.2%}")
    d = manifest["decision"]
    print(f"provisional threshold {d['threshold']} at FAR {d['far']} ({d['calibrated_on']})")
    print(f"NOT CALIBRATED: {d['not_calibrated_because']}")
    for problem in manifest["parity"]["problems"]:
        print(f"WARNING: {problem}")
    return 0


verb = Verb(
    "export",
    "Export a trained run as a device bundle: int8 and float TFLite, ONNX, manifest.",
    "  puf export runs/r1 --out bundles/r1\n"
    "  puf export runs/r1 --out bundles/r1-onnx --formats onnx --json",
    add_arguments,
    run,
    extras=("trainer", "device", "factory"),
    rank=21,
)
