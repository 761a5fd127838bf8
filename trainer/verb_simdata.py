"""`puf simdata`: simulated label crops to train on (a folder data set, `trainer.data`).

Only the standard library at module level; the work (`trainer.simdata.render_dataset`) is
imported when the verb runs.
"""

from __future__ import annotations

import argparse
import json
import os

from edge_app.arguments import grid, non_negative_int, output_path, positive_int
from edge_app.verbs import Verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=output_path, help="folder to write the data set into")
    parser.add_argument("--batches", type=positive_int, default=1, help="films (batches) to render")
    parser.add_argument("--first-seed", type=non_negative_int, default=1, help="film seed of the first batch")
    parser.add_argument("--fields", type=grid, default=(10, 10), metavar="COLSxROWS",
                        help="fields per batch (default 10x10)")
    parser.add_argument("--microscope-shots", type=non_negative_int, default=2)
    parser.add_argument("--handheld-shots", type=non_negative_int, default=2)
    parser.add_argument("--prefix", default="SIM")
    parser.add_argument("--capture-seed", type=non_negative_int, default=0)
    parser.add_argument("--segment", action="store_true",
                        help="cut handheld photos with the device's segmentation, not true corners")
    parser.add_argument("--pattern-set", default="builtin",
                        help="the glyphs: builtin, a patterns.json, .svg, .dxf or font:FONT:CHARS (default builtin)")
    parser.add_argument("--film-style", action="append", metavar="STYLE",
                        help="how the films look: a preset (default, coarse, fine, faceted, mottled) and/or "
                             "NAME=VALUE settings (grain_um, contrast, faceted, mottling); give it again for "
                             "films of several styles, taken in turn batch by batch (default: default)")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    from trainer.simdata import SimSpec, render_dataset

    cols, rows = args.fields
    styles = args.film_style or ["default"]
    specs = [SimSpec(f"{args.prefix}{args.first_seed + i}", args.first_seed + i, cols, rows,
                     args.microscope_shots, args.handheld_shots, seed=args.capture_seed,
                     segment_handheld=args.segment, pattern_set=args.pattern_set,
                     film_style=styles[i % len(styles)])
             for i in range(args.batches)]
    print(json.dumps(render_dataset(args.root, specs, args.workers)))
    return 0


verb = Verb(
    "simdata",
    "Render simulated label crops (microscope and handheld captures of simulated films) to train on.",
    "  puf simdata data/sim --batches 4 --fields 10x10\n"
    "  puf simdata data/styles --batches 3 --film-style coarse --film-style fine,faceted=yes",
    add_arguments,
    run,
    extras=("factory",),
    rank=19,
)
