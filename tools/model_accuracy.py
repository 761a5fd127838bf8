"""Verification accuracy of a bundle on labels it never saw (`trainer.model_accuracy`).

    python tools/model_accuracy.py models/default data/held_out --out accuracy.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from edge_app.errors import PufError
    from trainer.model_accuracy import evaluate_bundle

    parser = argparse.ArgumentParser(description="Verification accuracy of a bundle on held-out labels.")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path, help="folder data set of labels never trained on")
    parser.add_argument("--format", default="int8", choices=("int8", "float", "onnx"))
    parser.add_argument("--enroll", default="m0", help="capture name enrolled per label")
    parser.add_argument("--queries", default="h", help="query captures: names starting with this")
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args(argv)
    try:
        report = evaluate_bundle(args.bundle, args.data, args.format, args.enroll, args.queries)
    except PufError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
