"""A small real model bundle and a simulated batch, for the enrollment and verify tests.

The model is the designed one of `trainer.harness.designed_model` (a real Keras network, its
weights designed, not trained, so the tests need no training run), exported as `puf export`
writes a bundle. The batch is a simulated film (`trainer.simdata`): a microscope capture of
every label of its first field to enroll, and handheld photos to verify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from trainer.harness.designed_model import write_model_bundle


@dataclass(frozen=True)
class SimBatch:
    layout: object  # BatchLayout
    film: object  # EtchedFilm

    def handheld(self, field: int, slot: int, seed: int = 1) -> tuple[np.ndarray, dict]:
        from fabrication.sim.field_camera import capture_label

        return capture_label(self.film, self.layout, field, slot, seed)


@cache
def sim_batch(batch_id: str = "V1", film_seed: int = 5, fields: int = 2) -> SimBatch:
    from trainer.simdata import SimSpec, make_film, make_layout

    spec = SimSpec(batch_id, film_seed, fields, 1)
    layout = make_layout(spec)
    return SimBatch(layout, make_film(spec, layout))


def folder_crops(folder: Path, capture: str = "m0") -> list[np.ndarray]:
    import cv2

    return [cv2.imread(str(path)) for path in sorted((folder / "crops").glob(f"*/{capture}.png"))]


def write_crop_folder(out: Path, batch: SimBatch, fields: tuple[int, ...], shots: int = 1,
                      handheld: int = 0) -> Path:
    """labels.csv + crops/LABEL_ID/{mN,hN}.png: microscope and handheld captures of every
    label of `fields`."""
    import cv2

    from trainer.simdata import SimSpec, field_captures

    spec = SimSpec(batch.layout.batch_id, 0, batch.layout.field_cols, batch.layout.field_rows,
                   microscope_shots=shots, handheld_shots=handheld)
    rows = set()
    for field in fields:
        for label_id, name, crop in field_captures(spec, batch.layout, batch.film, field):
            (out / "crops" / label_id).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / "crops" / label_id / f"{name}.png"), crop)
            slot = int(label_id.rsplit("-", 1)[1])
            rows.add(f"{label_id},{batch.layout.batch_id},{batch.layout.pattern_of(field, slot)}")
    (out / "labels.csv").write_text("label_id,batch,pattern\n" + "\n".join(sorted(rows)) + "\n")
    return out


# ---- built once per session under its base folder, copied by the tests that change them ------


def _once(path: Path, build: Callable[[Path], object]) -> Path:
    """`path`, which `build` writes into a temporary sibling the first time it is asked for and
    which is then renamed into place: the session's base folder is the cache, and a build that
    failed half-way is never taken for a built one."""
    import shutil

    if not path.exists():
        part = path.with_name(path.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        build(part)
        part.rename(path)
    return path


def enroll_crops(base: Path) -> Path:
    """Microscope captures of field 0 of the simulated batch: the labels to enroll."""
    return _once(base / "enroll_crops", lambda out: write_crop_folder(out, sim_batch(), (0,)))


def model_bundle(base: Path) -> Path:
    """The designed model as an exported, unsigned bundle without shards (do not modify)."""
    return _once(base / "model_bundle", lambda out: write_model_bundle(out, folder_crops(enroll_crops(base))))


def keys(base: Path) -> tuple[Path, Path]:
    """A factory key pair, and a trusted-keys folder holding its public key."""
    from trainer.keys import generate_keypair

    def build(out: Path) -> None:
        out.mkdir()
        _, public, _ = generate_keypair(out / "factory")
        (out / "trusted").mkdir()
        (out / "trusted" / "factory.pub").write_bytes(public.read_bytes())

    folder = _once(base / "factory_keys", build)
    return folder / "factory.key", folder / "trusted"


def enrolled_bundle(base: Path, out: Path) -> Path:
    """A signed bundle with the 12 labels of field 0 enrolled, copied to `out`."""
    import shutil

    from trainer.enroll import enroll
    from trainer.keys import load_private_key

    def build(path: Path) -> None:
        shutil.copytree(model_bundle(base), path)
        enroll(path, enroll_crops(base), load_private_key(keys(base)[0]), progress=False)

    shutil.copytree(_once(base / "enrolled_bundle", build), out)
    return out


def batch_registry(base: Path, out: Path, batches: tuple[str, ...] = ("V1", "V2")) -> Path:
    """out/registry.sqlite holding `batches`, each the 12 labels of field 0 with status found
    and crops in out/BATCH/crops (copies of V1's microscope captures under each batch's ids)."""
    import shutil

    from fabrication.registry import FieldRecord, LabelRecord, Registry

    crops = enroll_crops(base)
    registry_path = out / "registry.sqlite"
    v1 = sim_batch().layout
    with Registry(registry_path) as registry:
        for layout in (sim_batch(batch).layout for batch in batches):
            batch_dir = out / layout.batch_id
            (batch_dir / "crops").mkdir(parents=True)
            labels = []
            for slot in range(12):
                label_id = layout.label_id(0, slot)
                shutil.copy(crops / "crops" / v1.label_id(0, slot) / "m0.png", batch_dir / "crops" / f"{label_id}.png")
                labels.append(LabelRecord(label_id, layout.batch_id, 0, slot, *divmod(slot, 4), "found",
                                          v1.pattern_of(0, slot), crop_path=f"crops/{label_id}.png"))
            registry.upsert_batch(layout, str(batch_dir))
            registry.record_field(FieldRecord(layout.batch_id, 0, "done"), labels)
    return registry_path
