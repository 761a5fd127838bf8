"""Fixtures of the enrollment tests: a model bundle trained once per module, a fresh copy
of it for each test, and the key that signs it."""

import shutil
from pathlib import Path

import pytest

from tests.bundle_support import keys, model_bundle
from trainer.keys import load_private_key


@pytest.fixture
def fresh(base, tmp_path) -> Path:
    return Path(shutil.copytree(model_bundle(base), tmp_path / "bundle"))


@pytest.fixture
def key(base):
    return load_private_key(keys(base)[0])
