"""`puf demo`: the whole line on the simulated factory, from design to verdicts.

The work is `trainer.harness.demo.run_demo`, imported when the verb runs; its report is printed
here, as tables for people or as JSON. The verb needs what the verbs of the line it runs need
(`trainer.harness.line.EXTRAS`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import grid, non_negative_int, output_path
from edge_app.verbs import Verb
from trainer.harness.line import EXTRAS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=output_path, default=Path("demo_out"),
                        help="folder to work in (default demo_out)")
    parser.add_argument("--fields", type=grid, default=(20, 10), metavar="COLSxROWS",
                        help="fields in the batch, 12 labels each (default 20x10 = 200 fields, 2,400 labels: "
                             "the paper's batch)")
    parser.add_argument("--photos", type=non_negative_int, default=200,
                        help="handheld photos of enrolled labels; as many of never-enrolled labels and half as "
                             "many clones (default 200)")
    parser.add_argument("--held-out", type=float, default=0.1, metavar="FRACTION",
                        help="share of the batch's fields never enrolled (default 0.1)")
    parser.add_argument("--figures", type=output_path, metavar="DIR",
                        help="also write the pictures here (e.g. docs/)")
    parser.add_argument("--seed", type=non_negative_int, default=1, help="seed of the handheld photos (default 1)")
    parser.add_argument("--film", default="default", metavar="STYLE",
                        help="how the simulated film looks: a preset (default, coarse, fine, faceted, mottled) "
                             "and/or NAME=VALUE settings, as 'puf etch --film-style' takes them (default: default)")
    parser.add_argument("--keep", action="store_true", help="keep what an earlier demo left in --out")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (the verbs' output goes "
                                                            "to stderr)")


def run(args: argparse.Namespace) -> int:
    import contextlib
    import json
    import sys

    from trainer.harness.demo import DemoOptions, run_demo
    from trainer.harness.demo_report import tables

    options = DemoOptions(out=args.out, fields="{}x{}".format(*args.fields), photos=args.photos, held_out=args.held_out,
                          seed=args.seed, film=args.film, keep=args.keep, figures=args.figures)
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        report = run_demo(options)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    paths = report["paths"]
    if "summary" in report:
        print("\n" + tables(report))
    print(f"\nmachine: {report['machine']['cpus']} CPU cores, Python {report['machine']['python']}")
    rows = [("batch", f"{paths['batch']}  (layout.json, cad/, laser/, stage/, sim/, fields/, crops/, overlays/)"),
            ("registry", paths["registry"]), *report["pictures"].items()]
    if "figures" in report:
        rows.append(("copied to", ", ".join(report["figures"].values())))
    if "try" in report:
        rows += [("bundle", f"{paths['bundle']}  (signed; trusted key in {paths['trusted_keys']})"),
                 ("photos", f"{paths['handheld']}  ({report['photos']} handheld photos, named by kind and label)")]
    print()
    for name, value in rows:
        print(f"{name + ':':<16}{value}")
    if "try" in report:
        print("\ntry them on the device's verifier and app:")
        for command in report["try"]:
            print(f"  {command}")
    return 0


verb = Verb(
    "demo",
    "Run the whole line on the simulated factory, verify genuine, never-enrolled and cloned labels.",
    "  puf demo                                    # a 2,400-label batch into ./demo_out (2-3 min)\n"
    "  puf demo --out /tmp/puf-demo --fields 4x2 --photos 40   # a small batch, under a minute\n"
    "  puf demo --figures docs/ --json > tools/results/demo.json   # the docs' pictures and results",
    add_arguments,
    run,
    extras=EXTRAS,
    rank=40,
)
