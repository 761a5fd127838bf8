"""Fixtures shared by the test packages."""

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The session's folder for the small real bundle and keys of `tests.bundle_support`
    (each is made once and reused)."""
    path = tmp_path_factory.getbasetemp() / "bundle_base"
    path.mkdir(exist_ok=True)
    return path
