"""Fixtures of the trainer tests: a few simulated labels' crops; for enrollment, a model
bundle trained once per module, a fresh copy of it for each test, and the key that signs it."""

import shutil
from pathlib import Path

import pytest

from tests.bundle_support import keys, model_bundle
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
