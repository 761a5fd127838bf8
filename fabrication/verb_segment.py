"""`puf segment`: cut photographed fields into label crops and record them in the registry.

A factory step that lives in `edge_app` because the device segments its own captures with
the same code.

BATCH_DIR/layout.json                    the batch layout (or --layout, or the sizes as options)
BATCH_DIR/fields/manifest.json           the fields to segment (or --order, or the images in
                                         fields/ or BATCH_DIR in sorted name order; see
                                         fabrication.segmentation.field_images)
BATCH_DIR/pattern_templates.npz          optional: glyph templates (edge_app.orientation);
                                         they settle the position of a slipped field, find
                                         a turned camera and name the patterns of a plain
                                         folder's labels
BATCH_DIR/stage/calibration.json         optional: the labels' rotation in the images and,
                                         with the manifest's stage positions, where each
                                         field really was
BATCH_DIR/crops/<label id>.png           one crop per label found, canonical orientation
BATCH_DIR/overlays/field_0007.jpg        with --overlay: what was found, for a person
REGISTRY                                 --registry, else $PUF_REGISTRY, else
                                         BATCH_DIR/../registry.sqlite (one per factory)

Every field is recorded in one transaction after its crops are written, so an interrupted
run resumes with the fields not yet recorded; a field already done is skipped unless
its image changed or --force is given (an ambiguous one is tried again). A field that cannot be read or segmented is
recorded and listed, and the run goes on.

Only the standard library at module level (`puf --help` stays instant): this module turns
the command line into `SegmentOptions` (fabrication.segmentation.segment_batch, which does the work) and
prints the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.arguments import finite, grid, int_up_to, non_negative, nonempty_path, positive
from edge_app.verbs import Verb

# The largest crop side: far above the model's input, small enough for any machine's memory.
MAX_CROP_SIZE = 4096

if TYPE_CHECKING:
    from fabrication.segmentation.segment_batch import SegmentOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fabrication.batch_dir import TEMPLATES_FILE
    from fabrication.segmentation.segment_batch import FolderOptions
    from fabrication.segmentation.segment_field import CutOptions

    parser.add_argument("batch_dir", type=nonempty_path, help="a photographed batch, or a folder of images")
    parser.add_argument("--registry", type=Path,
                        help="the factory's registry (default: $PUF_REGISTRY, else "
                             "registry.sqlite beside BATCH_DIR)")
    parser.add_argument("--method", choices=("fast", "paper"), default=CutOptions.method,
                        help=f"segmentation method (default {CutOptions.method}; 'paper' is the source paper's)")
    parser.add_argument("--overlay", action="store_true",
                        help="also draw each field with its labels, ids and rejections "
                             "(BATCH_DIR/overlays/)")
    parser.add_argument("--force", action="store_true", help="segment fields already recorded")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--crop-size", type=int_up_to(MAX_CROP_SIZE), default=CutOptions.crop_size,
                        help=f"crop side in px (default {CutOptions.crop_size})")
    parser.add_argument("--templates", type=Path,
                        help=f"pattern templates (.npz) to read glyphs with: they settle the "
                             f"position of a slipped field, find a turned camera and name the "
                             f"patterns of a plain folder's labels (default: BATCH_DIR/{TEMPLATES_FILE} "
                             "if it exists)")
    parser.add_argument("--rotation-deg", type=finite,
                        help="the labels' angle in the images, degrees clockwise, e.g. 90 for a "
                             "camera turned a quarter (default: the stage calibration's rotation, "
                             "BATCH_DIR/stage/calibration.json, else 0, turned by quarters as the "
                             "glyphs say when there are pattern templates)")
    parser.add_argument("--max-shift-um", type=non_negative, default=CutOptions.max_shift_um,
                        help=f"how far a field may lie from where it was planned (default {CutOptions.max_shift_um:g})")
    real = parser.add_argument_group("a folder of images without layout.json or manifest")
    real.add_argument("--order", type=Path, metavar="FILE.csv",
                      help="which image is which field: a CSV with the columns file,field; images "
                           "it does not name are skipped (default: the manifest, else the images "
                           "in sorted name order, fields 0, 1, ...)")
    real.add_argument("--layout", type=Path, metavar="LAYOUT.json",
                      help="the batch layout as `puf design` writes it (default: BATCH_DIR/layout.json, "
                           "else one built from the options below, patterns unknown)")
    real.add_argument("--pattern-set", type=Path, metavar="PATTERNS.json",
                      help="the glyphs etched in the labels (`puf patterns` writes this file from SVG, DXF or a "
                           "font): each label's pattern is read from its glyph, and the turn of the camera too")
    real.add_argument("--glyph-um", type=positive, help="glyph size in um (default 0.4 of the label side)")
    real.add_argument("--pixel-um", type=positive,
                      help="camera pixel size in um (default: the manifest's, else found from "
                           "the labels' size in each image)")
    real.add_argument("--batch-id", help="batch id (default: the folder's name)")
    real.add_argument("--labels", type=grid, default=FolderOptions.labels, metavar="COLSxROWS",
                      help="labels per field (default {}x{})".format(*FolderOptions.labels))
    real.add_argument("--label-um", type=float, default=FolderOptions.label_um,
                      help=f"label side (default {FolderOptions.label_um:g})")
    real.add_argument("--border-um", type=float, default=FolderOptions.border_um,
                      help=f"border width (default {FolderOptions.border_um:g})")
    real.add_argument("--pitch-um", type=float, default=FolderOptions.pitch_um,
                      help=f"label pitch (default {FolderOptions.pitch_um:g})")


def options_from(args: argparse.Namespace) -> SegmentOptions:
    """The command line as the run's typed options; the registry defaults to
    $PUF_REGISTRY, else registry.sqlite beside the batch."""
    from fabrication.batch_dir import BatchDir
    from fabrication.segmentation.segment_batch import FolderOptions, SegmentOptions
    from fabrication.segmentation.segment_field import CutOptions

    env = os.environ.get("PUF_REGISTRY")
    registry = args.registry or (Path(env) if env else BatchDir(args.batch_dir).default_registry)
    return SegmentOptions(
        args.batch_dir, registry,
        CutOptions(method=args.method, crop_size=args.crop_size, max_shift_um=args.max_shift_um,
                   overlay=args.overlay),
        templates=args.templates, rotation_deg=args.rotation_deg, force=args.force,
        folder=FolderOptions(order=args.order, layout=args.layout, pattern_set=args.pattern_set,
                             glyph_um=args.glyph_um, pixel_um=args.pixel_um, batch_id=args.batch_id,
                             labels=args.labels, label_um=args.label_um, border_um=args.border_um,
                             pitch_um=args.pitch_um))


def run(args: argparse.Namespace) -> int:
    from fabrication.segmentation.segment_batch import segment_batch

    summary = segment_batch(options_from(args))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_summary(summary)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _print_summary(summary: dict) -> None:
    out = sys.stdout
    fields, labels = summary["fields"], summary["labels"]
    print(f"\nbatch {summary['batch_id']}  ({summary['seconds']} s, segmentation "
          f"{summary['segment_ms_per_field']} ms a field)", file=out)
    rows = [("fields listed", fields["listed"]), ("  segmented now", fields["segmented_now"]),
            ("  already recorded", fields["skipped"])]
    rows += [(f"  {status}", fields.get(status, 0)) for status in
             ("done", "ambiguous", "failed", "unreadable") if fields.get(status)]
    rows += [("labels expected", labels["expected"])]
    rows += [(f"  {status}", labels.get(status, 0)) for status in
             ("found", "enrolled", "held_out", "rejected", "missing") if labels.get(status)]
    rows += [(f"    {why}", n) for why, n in summary["labels_not_found_why"].items()]
    rows += [("candidates rejected", sum(summary["candidates_rejected_why"].values()))]
    rows += [(f"  {why}", n) for why, n in summary["candidates_rejected_why"].items()]
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        print(f"{name:<{width}}{value:>8}", file=out)
    if summary["problems"]:
        print("\nfields with problems:", file=out)
        for problem in summary["problems"]:
            print(f"  field {problem['field']:>4}  {problem['status']:<10} {problem['detail']}",
                  file=out)
    rotation, pixel = summary["rotation"], summary["pixel_size_um"]
    print(f"\nfield order: {summary['field_order']}", file=out)
    if summary["images_not_in_order_file"]:
        names = summary["images_not_in_order_file"]
        print(f"images not in the order file, skipped: {len(names)} ({', '.join(names[:5])}"
              f"{', ...' if len(names) > 5 else ''})", file=out)
    print(f"rotation: {rotation['deg']:g} deg, from {rotation['from']}", file=out)
    if pixel["median"] is not None:
        print(f"pixel size: {pixel['median']:g} um, from {pixel['from']}", file=out)
    print(f"registry: {summary['registry']}", file=out)


verb = Verb(
    "segment",
    "Cut every field of a photographed batch, or a folder of images, into label crops and record "
    "them in the registry.",
    "  puf segment out/B0001                      # crops in out/B0001/crops, out/registry.sqlite\n"
    "  puf segment out/B0001 --overlay            # and a picture of each field to check\n"
    "  puf segment out/B0001 --json               # the summary for programs\n"
    "  puf segment scans/ --pixel-um 0.6 --labels 4x3   # a folder of real images, fields in name order\n"
    "  puf segment scans/ --order order.csv --layout layout.json   # fields by a CSV (file,field)\n"
    "  puf segment scans/ --pattern-set patterns.json --labels 4x3   # your glyphs (puf patterns): each\n"
    "                                             # label's pattern, the camera's turn, the pixel size found\n"
    "  puf segment out/B0001                      # again: resumes, skips recorded fields",
    add_arguments,
    run,
    extras=(),
    rank=14,
)
