"""`puf hold-out`: keep labels of the factory registry out of enrollment and training.

Labels kept back to calibrate with (never enrolled, so their photos are the impostors
`puf evaluate` measures against) or not to ship are marked ``held_out`` in the factory's
registry (`fabrication.registry`, the registry.sqlite `puf segment` writes): `puf enroll` skips
them into every bundle and `puf train` leaves them out, until `--release` puts them back.
A label already enrolled into a bundle is refused: take it out first (`puf unenroll`).
The verb is its own, not a `puf registry` action: `puf registry` is the brand's central
registry, where nothing is enrolled.

Only the standard library at module level.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import non_negative_int, nonempty_path
from edge_app.verbs import Verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("registry", type=nonempty_path, metavar="REGISTRY",
                        help="the factory's registry.sqlite (puf segment)")
    parser.add_argument("--batch", help="the batch; alone, every label of it")
    parser.add_argument("--field", type=non_negative_int, action="append", default=[], metavar="N",
                        help="every label of field N of --batch (repeatable)")
    parser.add_argument("--label", action="append", default=[], metavar="ID", help="one label (repeatable)")
    parser.add_argument("--release", action="store_true",
                        help="put held-out labels back: enrolled and trained on like the others")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def chosen(registry, batch: str | None, fields: list[int], labels: list[str]) -> list:
    """The registry's records of the labels the options name; a PufError for a batch, field
    or label the registry does not hold, or for none named."""
    from edge_app.errors import PufError

    records = []
    if batch is not None:
        if registry.batch_layout(batch) is None:
            raise PufError(f"the registry {registry.path} holds no batch {batch!r}")
        chosen_fields: list[int | None] = list(fields) or [None]
        for field in chosen_fields:
            found = registry.labels(batch, field=field)
            if not found:
                raise PufError(f"the registry {registry.path} holds no label of field {field} of batch {batch}")
            records.extend(found)
    for label_id in labels:
        record = registry.label(label_id)
        if record is None:
            raise PufError(f"the registry {registry.path} holds no label {label_id}")
        records.append(record)
    return records


def hold_out(path: Path, batch: str | None, fields: list[int], labels: list[str], release: bool) -> dict:
    """Mark the named labels held out (or, `release`, found again); labels that were rejected
    or missing in segmentation stay as they are. Returns a report."""
    from edge_app.errors import PufError
    from edge_app.ids import check_id
    from fabrication.registry import Registry

    if fields and batch is None:  # the options are checked before the registry is opened
        raise PufError("--field N needs --batch: the batch whose field it is")
    if batch is None and not labels:
        raise PufError("name the labels: --batch ID (every label), --batch ID --field N, or --label ID")
    if batch is not None:
        check_id("batch", batch)
    for label_id in labels:
        check_id("label", label_id)
    if not Path(path).is_file():
        raise PufError(f"no registry at {path}")
    # holding out an enrolled label is refused whole by set_status, naming a bundle that holds it
    movable, after = (("held_out",), "found") if release else (("found", "enrolled"), "held_out")
    with Registry(path) as registry:
        records = {record.label_id: record for record in chosen(registry, batch, fields, labels)}
        changed = registry.set_status(sorted(i for i, r in records.items() if r.status in movable), after)
        statuses = [record.status for record in registry.labels() if record.label_id in records]
    return {"registry": str(path), "labels": len(records), "changed": changed, "held_out": statuses.count("held_out"),
            "enrolled": statuses.count("enrolled"), "unusable": sum(s in ("rejected", "missing") for s in statuses),
            "released": release}


def describe(report: dict) -> str:
    done = "released" if report["released"] else "held out"
    return (f"{report['changed']} of {report['labels']} labels {done} in {report['registry']}: "
            f"{report['held_out']} held out, {report['enrolled']} enrolled, {report['unusable']} rejected or missing "
            "in segmentation")


def run(args: argparse.Namespace) -> int:
    from edge_app.verbs import print_report

    report = hold_out(args.registry, args.batch, args.field, args.label, args.release)
    return print_report(report, args.json, describe)


verb = Verb(
    "hold-out",
    "Keep labels of the factory registry out of enrollment and training (calibration labels); --release undoes it.",
    "  puf hold-out out/registry.sqlite --batch F1 --field 7       # field 7: the calibration's never-enrolled\n"
    "  puf hold-out out/registry.sqlite --batch B0003               # a whole batch kept back\n"
    "  puf hold-out out/registry.sqlite --label F1-0007-03 --release",
    add_arguments,
    run,
    rank=15,
)
