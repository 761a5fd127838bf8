"""`puf verify IMAGE...`: a verdict for every label in each photo, against a signed bundle.

The bundle is checked before anything is verified (signature against the trusted keys,
every file's checksum); a photo that cannot be read is an ``unreadable`` verdict, not an
abort. Exit status: 0 when every label is genuine, 1 when any is counterfeit, 3 when none
is counterfeit but some photo or label was unreadable (2 is an error, as for every verb).
A label beyond the ones verified per photo is an unreadable "not checked" verdict: a photo
with a label left unchecked never exits 0.

Only the standard library is imported here at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_app.arguments import nonempty_path
from edge_app.verbs import Verb

EXIT_COUNTERFEIT = 1
EXIT_UNREADABLE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=nonempty_path, nargs="+", metavar="IMAGE", help="photos of labels")
    parser.add_argument("--bundle", type=Path, help="bundle folder (default: $PUF_BUNDLE, else models/default)")
    parser.add_argument("--trusted-keys", type=Path,
                        help="folder of trusted *.pub keys (default: $PUF_TRUSTED_KEYS, else "
                             "~/.config/puf/trusted_keys)")
    parser.add_argument("--no-classify", action="store_true",
                        help="search every pattern's shard (the paper's slower mode), not only the predicted one")
    parser.add_argument("--label-px", type=label_px, default=None, metavar="auto|PX",
                        help="label side in the photo, px (+-30%%), or auto: found in each photo (default: auto)")
    parser.add_argument("--model-format", choices=("int8", "float", "onnx"),
                        help="model file to run (default: the one the labels were enrolled with)")
    parser.add_argument("--threads", type=int, default=2, help="model threads, 1-64 (default 2)")
    parser.add_argument("--max-pixels", type=max_pixels, default=None, metavar="N",
                        help="refuse photos of more pixels, before decoding them (default: $PUF_MAX_PIXELS, else "
                             "the library's, sized for a 4 GB Raspberry Pi)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")


def label_px(text: str) -> float | None:
    """`--label-px`: "auto" (None) or a size of at least 16 px (`edge_app.label_size.parse_label_px`)."""
    from edge_app.errors import PufError
    from edge_app.label_size import parse_label_px

    try:
        return parse_label_px(text)
    except PufError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def max_pixels(text: str) -> int:
    """`--max-pixels`: a whole number of at least 1 (`edge_app.photo_size.parse_max_pixels`)."""
    from edge_app.errors import PufError
    from edge_app.photo_size import parse_max_pixels

    try:
        return parse_max_pixels(text)
    except PufError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    from edge_app.bundle import load_bundle
    from edge_app.errors import PufError
    from edge_app.runtime import default_bundle
    from edge_app.segment import load_image
    from edge_app.verify import CaptureLimits, Verdict, Verifier

    bundle = load_bundle(args.bundle or default_bundle(), args.trusted_keys)
    verifier = Verifier(bundle, classify=not args.no_classify, limits=CaptureLimits(label_px=args.label_px),
                        model_format=args.model_format, num_threads=args.threads)
    if bundle.uncalibrated_warning:
        print(f"WARNING: {bundle.uncalibrated_warning}", file=sys.stderr)
    verdicts: list[Verdict] = []
    for path in args.images:
        try:
            image = load_image(path, args.max_pixels)
        except PufError as error:
            verdicts.append(Verdict("unreadable", None, None, bundle.threshold, None, None, {}, str(error), str(path)))
            continue
        verdicts.extend(verifier.verify_image(image, str(path)))
    if args.json:
        print(json.dumps({"bundle": str(bundle.path), "signed_by": bundle.signer,
                          "classify": not args.no_classify, "verdicts": [v.to_dict() for v in verdicts]},
                         indent=1, ensure_ascii=False))
    else:
        print_table(verdicts, sys.stdout)
    kinds = {v.verdict for v in verdicts}
    if "counterfeit" in kinds:
        return EXIT_COUNTERFEIT
    return EXIT_UNREADABLE if "unreadable" in kinds else 0


def print_table(verdicts: list, out) -> None:
    header = f"{'label in photo':<28}{'verdict':<12}{'label id':<16}{'score':>7}{'thresh':>8}  {'pattern':<14}" \
             f"{'seg':>6}{'model':>7}{'search':>7}{'total':>7}  ms"
    print(header, file=out)
    for v in verdicts:
        t = v.timings_ms
        score = f"{v.score:.3f}" if v.score is not None else "-"
        pattern = f"{v.pattern} {v.pattern_confidence:.2f}" if v.pattern else "-"
        times = "".join(f"{t[k]:>{w}.1f}" if k in t else f"{'-':>{w}}"
                        for k, w in (("segment", 6), ("model", 7), ("search", 7), ("total", 7)))
        source = v.source if len(v.source) <= 27 else "..." + v.source[-24:]
        print(f"{source:<28}{v.verdict:<12}{v.label_id or '-':<16}{score:>7}{v.threshold:>8.3f}  {pattern:<14}{times}",
              file=out)
        if v.verdict != "genuine":
            print(f"{'':<28}{v.reason}", file=out)


verb = Verb(
    "verify",
    "Verify photos of labels against a signed bundle: genuine, counterfeit or unreadable, with timings.",
    "  puf verify photo.jpg                               # models/default, ~/.config/puf/trusted_keys\n"
    "  puf verify shots/*.jpg --bundle bundles/b1 --json\n"
    "  puf verify photo.jpg --no-classify                 # search every pattern's shard\n"
    "  puf verify photo.jpg --trusted-keys keys/ --label-px 250",
    add_arguments,
    run,
    extras=("device",),
    rank=30,
)
