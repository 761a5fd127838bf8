"""Whatever JSON a bundle's manifest holds, in any field, signed or not, the device answers
with a bundle it can use or a PufError that says what is wrong: never a traceback.

Each example replaces (or removes) one field of a real enrolled bundle's manifest, at any
depth, by a random JSON value; the signed variant re-signs the result with the trusted
factory key, so the checks behind the signature are reached too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_app.bundle import Bundle, load_bundle
from edge_app.bundle_format import Manifest
from edge_app.device_store import DeviceStore, bundle_version
from edge_app.errors import PufError
from edge_app.signing import canonical_bytes
from tests.bundle_support import enrolled_bundle, keys

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
REMOVE = object()


@pytest.fixture(scope="module")
def bundle(base, tmp_path_factory) -> Path:
    return enrolled_bundle(base, tmp_path_factory.mktemp("props") / "bundle")


@pytest.fixture(scope="module")
def original(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every field of a JSON value, at any depth, as a path of keys and indexes."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):  # three pattern names stand for all of them
            found += paths(item, (*prefix, index))
    return found


def mutated(manifest: dict, path: tuple, value: object) -> dict:
    data = json.loads(json.dumps(manifest))
    *parents, last = path
    holder = data
    for key in parents:
        holder = holder[key]
    if value is REMOVE and isinstance(holder, dict):
        del holder[last]
    else:
        holder[last] = None if value is REMOVE else value
    return data


def answers(opened) -> None:
    """Opening, and then using what the device uses of a bundle, gives values of the right
    kind or a PufError; anything else fails the test."""
    try:
        loaded = opened()
        assert isinstance(loaded, Bundle)
        assert isinstance(loaded.threshold, float) and isinstance(loaded.pattern_classes, list)
        assert loaded.embedding_dim >= 1 and (loaded.far is None or isinstance(loaded.far, float | int))
        assert loaded.uncalibrated_warning is None or isinstance(loaded.uncalibrated_warning, str)
        assert bundle_version(loaded)
        loaded.runner()
    except PufError as error:
        assert str(error)


def field_changes():
    return st.tuples(st.integers(min_value=0), JSON | st.just(REMOVE))


def write(bundle: Path, base: Path, original: dict, change: tuple, sign: bool) -> None:
    from trainer.keys import load_private_key, sign_manifest

    fields = paths(original if not sign else {k: v for k, v in original.items() if k != "signature"})
    pick, value = change
    data = mutated(original, fields[pick % len(fields)], value)
    if sign:
        try:
            data = sign_manifest(data, load_private_key(keys(base)[0]))
        except PufError:  # a value a signature cannot cover (NaN, infinity): kept with its old signature
            pass
    (bundle / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize("sign", [False, True], ids=["as-signed-then-edited", "re-signed"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=field_changes())
def test_any_value_in_any_manifest_field_is_a_bundle_or_a_clear_refusal(bundle, base, original, sign, change):
    write(bundle, base, original, change, sign)
    answers(lambda: load_bundle(bundle, keys(base)[1]))
    answers(lambda: load_bundle(bundle, check=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=field_changes())
def test_the_device_store_installs_or_refuses_any_resigned_manifest(bundle, base, original, tmp_path_factory, change):
    write(bundle, base, original, change, sign=True)
    store = DeviceStore(tmp_path_factory.mktemp("device"))
    answers(lambda: store.install_bundle(bundle, keys(base)[1]))
    shutil.rmtree(store.home)


COMMITTED = Path(__file__).resolve().parents[1] / "data" / "arm64" / "bundle" / "manifest.json"


@settings(max_examples=300, deadline=None)
@given(change=field_changes())
def test_a_manifest_read_and_written_again_is_the_same_json_so_its_signature_holds(change):
    """Whatever `Manifest.from_dict` accepts, `to_dict` gives back unchanged (the typed fields,
    the untyped ones and the nulls), so a writer that reads, changes one field and signs again
    never changes what it did not touch; anything else is a PufError."""
    signed = json.loads(COMMITTED.read_text())
    data = mutated(signed, paths(signed)[change[0] % len(paths(signed))], change[1])
    try:
        manifest = Manifest.from_dict(data)
    except PufError as error:
        assert str(error)
        return
    assert manifest.to_dict() == data
    assert canonical_bytes(manifest.to_dict()) == canonical_bytes(data)
