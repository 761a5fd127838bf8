"""`puf verify IMAGE...`: a verdict for every label in each photo, against a signed bundle.

The bundle is checked before anything is verified (signature against the trusted keys,
every file's checksum, not expired) and its sequence and signer printed; a photo that cannot
be read is an ``unreadable`` verdict, not an abort. Exit status (`EXIT_STATUSES`, shown by
--help): 0 when every label is genuine, 1 when any is counterfeit or revoked, 3 when none is
counterfeit or revoked but some photo or label was unreadable, 2 for input refused (as for every verb), 70 for a
crash. A label beyond the ones verified per photo is an unreadable "not checked" verdict: a
photo with a label left unchecked never exits 0.
By default the device's own bundle and trusted keys are used (`edge_app.device_setup`);
``--self-test`` checks the install with the package's own bundle and photos (`edge_app.self_test`).

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
EXIT_STATUSES = """exit status:
  0   every label genuine (--self-test: every verdict as expected)
  1   a label counterfeit (not among the bundle's labels) or revoked (on its signed revocation list,
      a stolen or recalled label; the JSON's verdict says "revoked", with the reason)
  2   input refused or an error (a bundle that fails its checks, a failed --self-test), said on stderr
  3   none counterfeit or revoked, but a photo or label unreadable: retake it (a photo that cannot
      be used at all, `CaptureUnusable`, is one unreadable verdict; the other photos are still checked)
  70  internal error (a crash): please report it with its traceback"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=nonempty_path, nargs="*", metavar="IMAGE", help="photos of labels")
    parser.add_argument("--bundle", type=Path, help="bundle folder (default: $PUF_BUNDLE, else the one installed "
                                                    "on this device by puf device install)")
    parser.add_argument("--trusted-keys", type=Path,
                        help="folder of trusted *.pub keys, and root keys in its root/ (default: the device's, as puf "
                             "device trust keeps them)")
    parser.add_argument("--self-test", action="store_true",
                        help="check this install end to end: verify the package's own test photos against its own "
                             "small signed bundle (its key trusted for this run only), and nothing else")
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
    from edge_app.device_setup import verify_sources
    from edge_app.errors import CaptureUnusable, PufError
    from edge_app.segment import load_image
    from edge_app.verdicts import Kind, Reason
    from edge_app.verify import CaptureLimits, Verdict, Verifier

    if args.self_test:
        if args.images or args.bundle or args.trusted_keys:
            raise PufError("--self-test uses its own bundle, key and photos: give it alone")
        return run_self_test(args.json)
    if not args.images:
        raise PufError("give the photos to verify (or --self-test to check this install)")
    path, keys, held = verify_sources(args.bundle, args.trusted_keys)
    bundle = load_bundle(path, keys, root_list=held)
    bundle.release.refuse_expired(f"the bundle {bundle.path}", ": its labels and threshold may be out of date")
    verifier = Verifier(bundle, classify=not args.no_classify, limits=CaptureLimits(label_px=args.label_px),
                        model_format=args.model_format, num_threads=args.threads)
    if bundle.uncalibrated_warning:
        print(f"WARNING: {bundle.uncalibrated_warning}", file=sys.stderr)
    verdicts: list[Verdict] = []
    for path in args.images:
        try:
            image = load_image(path, args.max_pixels)
        except CaptureUnusable as error:
            verdicts.append(Verdict(verdict=Kind.UNREADABLE, why=Reason.BAD_IMAGE.of(problem=str(error)),
                                    threshold=bundle.threshold, source=str(path)))
            continue
        verdicts.extend(verifier.verify_image(image, str(path)))
    if args.json:
        print(json.dumps({"bundle": str(bundle.path), "signed_by": bundle.signer,
                          "sequence": bundle.release.sequence, "classify": not args.no_classify,
                          "verdicts": [v.to_dict() for v in verdicts]}, indent=1, ensure_ascii=False))
    else:
        print(f"bundle {bundle.path}: {bundle.release.describe()}; signer: key {bundle.signer}")
        print_table(verdicts, sys.stdout)
    kinds = {v.verdict for v in verdicts}
    if kinds & {"counterfeit", "revoked"}:
        return EXIT_COUNTERFEIT
    return EXIT_UNREADABLE if "unreadable" in kinds else 0


def run_self_test(as_json: bool) -> int:
    """`--self-test`: 0 when every photo gives the verdict its name records; PufError naming
    the photos that do not."""
    from edge_app.errors import PufError
    from edge_app.self_test import self_test

    checks, verifier = self_test()
    failed = [check for check in checks if not check.passed]
    if as_json:
        print(json.dumps({"bundle": str(verifier.bundle.path), "signed_by": verifier.bundle.signer,
                          "passed": not failed,
                          "checks": [{"photo": c.photo, "expected": c.expected, "label_id": c.label_id,
                                      "passed": c.passed, "verdicts": [v.to_dict() for v in c.verdicts]}
                                     for c in checks]}, indent=1))
    else:
        print_table([v for check in checks for v in check.verdicts], sys.stdout)
    if failed:
        got = "; ".join(f"{c.photo} gave {', '.join(v.verdict for v in c.verdicts)}, expected {c.expected}"
                        for c in failed)
        raise PufError(f"self-test failed: {got}; this install does not verify as it should (puf --version lists "
                       "its libraries)")
    if not as_json:
        print(f"self-test passed: {len(checks)} photos verified as expected against the self-test's own bundle "
              f"(key {verifier.bundle.signer}, trusted for this run only)")
    return 0


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
    "Verify photos of labels against a signed bundle: genuine, counterfeit, revoked or unreadable, with timings.",
    "  puf verify photo.jpg                     # the device's bundle and keys (puf device trust, install)\n"
    "  puf verify shots/*.jpg --json            # every label's verdict, for a program\n"
    "  puf verify photo.jpg --bundle bundles/b1 --trusted-keys keys/   # a bundle not installed\n"
    "  puf verify photo.jpg --no-classify       # search every pattern's shard (slower)\n"
    "  puf verify photo.jpg --label-px 300      # the label's side in the photo, px (default: found)\n"
    "  puf verify --self-test                   # check this install with the package's own photos\n"
    "\n" + EXIT_STATUSES,
    add_arguments,
    run,
    extras=("device",),
    rank=30,
)
