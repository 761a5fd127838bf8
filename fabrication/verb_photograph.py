"""`puf photograph`: every field of a batch at its stage position; or, on the simulator, handheld
re-captures of its labels (`--handheld N`) for `puf queries`.

The work is `fabrication.photograph.photograph_batch` (`fabrication.handheld.photograph_handheld`),
imported when the verb runs.
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
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the simulated microscope's faults, or of the handheld photos")
    parser.add_argument("--force", action="store_true", help="re-shoot fields (or handheld photos) that already exist")
    handheld = parser.add_argument_group(
        "handheld re-captures (with --sim)",
        "an inspector's photos of labels whose ids are known, named LABEL_ID_K.jpg as puf queries reads them: "
        "photograph enrolled labels and labels never enrolled to calibrate the threshold (puf evaluate)")
    handheld.add_argument("--handheld", type=int, metavar="N",
                          help="instead of the fields: N handheld photos of each chosen label, into --out")
    handheld.add_argument("--out", type=Path, metavar="DIR", help="folder for the handheld photos")
    handheld.add_argument("--fields", metavar="LIST", help="the labels of these fields, e.g. 0-5,7")
    handheld.add_argument("--labels", action="append", default=[], metavar="IDS",
                          help="these labels (ids, comma-separated; repeatable); default with neither: every label")


def run(args: argparse.Namespace) -> int:
    import time

    from edge_app.errors import PufError
    from fabrication.batch_dir import BatchDir
    from fabrication.photograph import photograph_batch

    if args.handheld is not None:
        return _handheld(args)
    if args.out or args.fields or args.labels:
        raise PufError("--out, --fields and --labels choose handheld photos: give --handheld N with them")
    started = time.perf_counter()
    shot, kept = photograph_batch(args.batch_dir, None if args.sim else args.mm_config, args.positions,
                                  args.pixel_size_um, args.workers, args.seed, args.force)
    print(f"{shot} fields photographed, {kept} already there, in {time.perf_counter() - started:.1f} s "
          f"-> {BatchDir(args.batch_dir).fields_dir}")
    return 0


def _handheld(args: argparse.Namespace) -> int:
    from edge_app.errors import PufError
    from fabrication.handheld import photograph_handheld

    if not args.sim:
        raise PufError("--handheld photographs the simulated film: give --sim (a real camera takes its own photos)")
    if args.out is None:
        raise PufError("--handheld needs --out DIR, the folder for the photos")
    labels = [label.strip() for item in args.labels for label in item.split(",") if label.strip()]
    report = photograph_handheld(args.batch_dir, args.out, args.handheld, args.fields, labels, args.seed, args.force)
    print(f"{report['written']} handheld photos of {report['labels']} labels of {report['batch']} taken, "
          f"{report['kept']} already there -> {report['out']} (for puf queries)")
    return 0


verb = Verb(
    "photograph",
    "Photograph every field of a batch at its stage position (one TIFF per field); or handheld re-captures "
    "of its labels on the simulator.",
    "  puf photograph out/B0001 --sim              # the simulated microscope\n"
    "  puf photograph out/B0001 --mm-config rig.cfg   # a Micro-Manager rig (pymmcore-plus)\n"
    "  puf photograph out/B0001 --sim              # again: resumes, shoots only what is missing\n"
    "  puf photograph out/B0001 --sim --handheld 2 --fields 0-5,7 --out recaptures   # re-captures for puf queries",
    add_arguments,
    run,
    extras=("factory",),
    rank=13,
)
