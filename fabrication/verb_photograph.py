"""`puf photograph`: every field of a batch at its stage position.

The work is `fabrication.photograph.photograph_batch`, imported when the verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import non_negative_int, positive, positive_int
from edge_app.verbs import Verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("batch_dir", type=Path, help="a batch designed with 'puf design'")
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--sim", action="store_true", help="the simulated microscope (after 'puf etch --sim')")
    backend.add_argument("--mm-config", type=Path, metavar="CFG",
                         help="a Micro-Manager configuration file: the batch's MDASequence runs through "
                              "pymmcore-plus's engine, fields written as OME-TIFF")
    parser.add_argument("--positions", type=Path,
                        help="stage positions to visit: our CSV, a Micro-Manager .pos list or a useq "
                             "MDASequence JSON (default: BATCH_DIR/stage/positions.csv; with --mm-config "
                             "the batch's MDASequence, BATCH_DIR/stage/mda.json)")
    parser.add_argument("--pixel-size-um", type=positive, default=0.6,
                        help="camera pixel size when the rig does not report one (default 0.6)")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="simulator processes working in parallel (default 2)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the simulated microscope's faults")
    parser.add_argument("--force", action="store_true", help="re-shoot fields that already exist")


def run(args: argparse.Namespace) -> int:
    import time

    from edge_app.batch_dir import BatchDir
    from fabrication.photograph import photograph_batch

    started = time.perf_counter()
    shot, kept = photograph_batch(args.batch_dir, None if args.sim else args.mm_config, args.positions,
                                  args.pixel_size_um, args.workers, args.seed, args.force)
    print(f"{shot} fields photographed, {kept} already there, in {time.perf_counter() - started:.1f} s "
          f"-> {BatchDir(args.batch_dir).fields_dir}")
    return 0


verb = Verb(
    "photograph",
    "Photograph every field of a batch at its stage position (one TIFF per field).",
    "  puf photograph out/B0001 --sim              # the simulated microscope\n"
    "  puf photograph out/B0001 --mm-config rig.cfg   # a Micro-Manager rig (pymmcore-plus)\n"
    "  puf photograph out/B0001 --sim              # again: resumes, shoots only what is missing",
    add_arguments,
    run,
    extras=("factory",),
    rank=13,
)
