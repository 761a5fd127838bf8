"""The PufError kinds callers branch on: a photo that cannot be verified (CaptureUnusable:
an unreadable verdict, the other photos still checked), a bundle the device will not take
(BundleRefused: the bundle in use stays), a device that stopped partway (HardwareStopped)."""

import json
import shutil
from pathlib import Path

import pytest

from edge_app.bundle import load_bundle
from edge_app.camera.file_source import read_photo
from edge_app.device_store import DeviceStore, bundle_version
from edge_app.errors import BundleRefused, CaptureUnusable, HardwareStopped
from edge_app.segment import load_image
from fabrication.sim.galvo_board import SimulatedLmcBoard
from tests.batch_support import LABELS, connect, make_job
from tests.photo_support import png_header


@pytest.mark.parametrize("name, data", [("empty.png", b""), ("text.jpg", b"not a photo"),
                                        ("giant.png", png_header(20000, 20000))])
def test_a_photo_that_cannot_be_verified_is_capture_unusable(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CaptureUnusable, match=name):
        load_image(path)
    with pytest.raises(CaptureUnusable, match=name):
        read_photo(path)
    with pytest.raises(CaptureUnusable, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_a_bundle_the_device_will_not_take_is_bundle_refused_and_the_current_one_stays(enrolled, tmp_path):
    path, trusted, _ = enrolled
    store = DeviceStore(tmp_path / "home")
    store.install_bundle(path, trusted)
    version = bundle_version(load_bundle(store.bundle_path(), trusted))
    tampered = Path(shutil.copytree(path, tmp_path / "usb" / "tampered"))
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["threshold"] = 0.01  # every label genuine, were it taken
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    for source in (tampered, tmp_path / "usb" / "none", path):  # tampered, no bundle, the same sequence again
        with pytest.raises(BundleRefused):
            store.install_bundle(source, trusted)
        assert bundle_version(load_bundle(store.bundle_path(), trusted)) == version


def test_a_laser_stopped_partway_is_hardware_stopped():
    lines = make_job(LABELS)
    board = SimulatedLmcBoard(halt_at_list=2)
    laser, _ = connect(board, lines)
    with pytest.raises(HardwareStopped, match="partly marked"):
        laser.run_job(lines)
    assert not board.beam_enabled


def test_the_app_tells_the_kinds_apart_by_their_class_never_by_their_words():
    from edge_app.app.inspection import Trouble, trouble_of
    from edge_app.errors import PufError

    # each message is another kind's words: only the class may decide
    assert trouble_of(BundleRefused("the camera stopped")) == Trouble.BUNDLE_REFUSED
    assert trouble_of(CaptureUnusable("the camera stopped; update refused")) == Trouble.CAPTURE_UNUSABLE
    assert trouble_of(HardwareStopped("cannot read the photo x.png")) == Trouble.HARDWARE_STOPPED
    assert trouble_of(PufError("Update refused: cannot read the photo")) == Trouble.OTHER
    assert trouble_of(RuntimeError("bundle refused")) == Trouble.BUG
