"""Fixtures of the trainer tests: a few simulated labels' crops; for enrollment, a model
bundle trained once per module, a fresh copy of it for each test, and the key that signs it."""

import shutil
from pathlib import Path

import pytest

from tests.bundle_support import enroll_crops, keys, model_bundle, sim_batch, write_crop_folder
from tests.store_support import main
from trainer.keys import load_private_key
from trainer.simdata import SimSpec, render_dataset


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory) -> Path:
    """15 simulated labels (3 microscope and 1 handheld capture each), 96 px crops."""
    root = tmp_path_factory.mktemp("crops")
    render_dataset(root, [SimSpec("T1", 5, 3, 1, microscope_shots=3, handheld_shots=1,
                                  crop_size=96)], workers=1, progress=False)
    return root


@pytest.fixture
def fresh(base, tmp_path) -> Path:
    return Path(shutil.copytree(model_bundle(base), tmp_path / "bundle"))


@pytest.fixture
def key(base):
    return load_private_key(keys(base)[0])


@pytest.fixture(scope="module")
def central(base, tmp_path_factory, store_engine, request):
    """A factory bundle enrolled with field 0 for tea/eu and field 1 for tea/us, both also
    written to one fingerprint store (Milvus Lite, and a database on the test Milvus server),
    through `puf enroll --milvus`."""
    root = tmp_path_factory.mktemp("central")
    bundle = Path(shutil.copytree(model_bundle(base), root / "factory"))
    store = root / "fingerprints.db" if store_engine == "milvus_lite" else request.getfixturevalue("milvus_server")()
    us_crops = write_crop_folder(root / "us_crops", sim_batch(), (1,))
    for crops, region in ((enroll_crops(base), "eu"), (us_crops, "us")):
        assert main(["enroll", "--bundle", str(bundle), "--labels", str(crops), "--key", str(keys(base)[0]),
                     "--milvus", str(store), "--product", "tea", "--region", region, "--json"]) == 0
    return bundle, store, us_crops
