"""Frame sources without camera hardware: the file/folder source, OpenCV reading a real
video file (and failing clearly on cameras that are not there), and the camera specs."""

import sys

import cv2
import numpy as np
import pytest

from edge_app.camera import Frame, FrameSource, open_camera
from edge_app.camera.file_source import FileSource
from edge_app.errors import PufError


def picture(width: int, height: int, seed: int) -> np.ndarray:
    """A textured BGR picture (smooth, so JPEG keeps it close)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def shots(tmp_path):
    """A folder: three photos in three formats, out of name order on disk, plus things that
    are not photos."""
    folder = tmp_path / "shots"
    folder.mkdir()
    images = {"b_second.png": picture(800, 600, 2), "a_first.jpg": picture(800, 600, 1),
              "c_third.tif": picture(320, 240, 3)}
    for name, image in images.items():
        assert cv2.imwrite(str(folder / name), image)
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".hidden.png").write_bytes(b"")
    (folder / "sub").mkdir()
    cv2.imwrite(str(folder / "sub" / "0_inside.png"), picture(64, 64, 4))
    return folder, images


def test_a_folder_is_captured_in_name_order_wrapping_round(shots):
    folder, images = shots
    with open_camera(f"file:{folder}") as camera:
        assert isinstance(camera, FrameSource)
        assert camera.name == "file: shots/ (1 of 3)"
        taken = []
        for _ in range(4):
            frame = camera.capture()
            assert isinstance(frame, Frame) and frame.exposure_us is None and frame.gain is None
            taken.append(frame)
        assert [f.source for f in taken] == [str(folder / n) for n in ("a_first.jpg", "b_second.png", "c_third.tif",
                                                                       "a_first.jpg")]
        assert camera.name == "file: shots/ (2 of 3)"
    first, second, third = taken[:3]
    assert first.image.dtype == np.uint8 and first.image.shape == (600, 800, 3)
    assert np.abs(first.image.astype(int) - images["a_first.jpg"]).mean() < 3  # JPEG
    assert np.array_equal(second.image, images["b_second.png"])
    assert np.array_equal(third.image, images["c_third.tif"])
    assert first.timestamp <= second.timestamp <= third.timestamp
    second.image[:] = 0  # a frame belongs to whoever took it: the next capture is untouched
    assert np.array_equal(FileSource(folder / "b_second.png").capture().image, images["b_second.png"])


def test_the_preview_is_the_current_photo_downscaled_and_cached(shots):
    folder, images = shots
    camera = open_camera(f"file:{folder}")
    preview = camera.preview_frame(640)
    assert preview.shape == (480, 640, 3) and preview.dtype == np.uint8
    expected = cv2.resize(cv2.imread(str(folder / "a_first.jpg")), (640, 480), interpolation=cv2.INTER_AREA)
    assert np.array_equal(preview, expected)
    assert camera.preview_frame(640) is preview  # read and scaled once per photo, however often asked
    assert not preview.flags.writeable  # shared between calls: nobody may draw on it
    assert camera.preview_frame(320).shape == (240, 320, 3)
    assert camera.preview_frame().shape == (480, 640, 3)
    camera.capture()
    assert camera.preview_frame(640) is not preview  # the next photo
    camera.capture()
    assert camera.preview_frame(640).shape == (240, 320, 3)  # never enlarged
    with pytest.raises(PufError, match="at least 16"):
        camera.preview_frame(8)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".PNG"])
def test_every_photo_format(tmp_path, suffix):
    image = picture(160, 128, 5)
    path = tmp_path / f"photo{suffix}"
    assert cv2.imwrite(str(path), image)
    camera = open_camera(f"file:{path}")
    assert camera.name == f"file: photo{suffix}"
    got = camera.capture().image
    assert got.shape == image.shape and np.abs(got.astype(int) - image).mean() < 3
    assert camera.capture().source == str(path)  # one photo: always the same


def test_grey_and_16_bit_photos_become_8_bit_bgr(tmp_path):
    grey = picture(64, 48, 6)[..., 1]
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    cv2.imwrite(str(tmp_path / "deep.tif"), grey.astype(np.uint16) * 257)
    for name in ("grey.png", "deep.tif"):
        image = open_camera(f"file:{tmp_path / name}").capture().image
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert np.abs(image[..., 1].astype(int) - grey).max() <= 1


def test_an_unreadable_photo_is_named_and_skipped(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    cv2.imwrite(str(folder / "1_good.png"), picture(320, 240, 7))
    (folder / "2_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    cv2.imwrite(str(folder / "3_good.png"), picture(320, 240, 8))
    camera = open_camera(f"file:{folder}")
    camera.capture()
    assert camera.name == "file: mixed/ (2 of 3)"
    # the live view says why there is no picture, without failing (it asks 30 times a second)
    preview = camera.preview_frame(320)
    assert preview.shape == (240, 320, 3) and camera.preview_frame(320) is preview
    with pytest.raises(PufError, match=r"cannot read the photo .*2_broken\.jpg"):
        camera.capture()
    assert camera.capture().source.endswith("3_good.png")  # the inspector can go on


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nothing_here", "no such photo or folder"),
    (lambda p: p, "holds no photos"),
    (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "not a photo"),
])
def test_bad_file_sources(tmp_path, make, message):
    with pytest.raises(PufError, match=message):
        open_camera(f"file:{make(tmp_path)}")


@pytest.mark.parametrize("spec", ["", "file:", "usb:0", "opencv:", "picamera2:left", "camera", "0"])
def test_bad_specs_say_what_to_write(spec):
    with pytest.raises(PufError, match=r"unknown camera .*file:PATH.*opencv:N.*picamera2"):
        open_camera(spec)


@pytest.mark.parametrize("exposure, gain, message", [
    (None, 2.0, "needs an exposure time"),
    (0, None, "whole number"),
    (-100, 1.0, "whole number"),
    (1500.5, 1.0, "whole number"),
    (True, 1.0, "whole number"),
    ("fast", 1.0, "whole number"),
    (20_000_000, 1.0, "whole number"),
    (1000, 0.0, "analogue gain"),
    (1000, 100.0, "analogue gain"),
])
def test_bad_exposures_are_refused(shots, exposure, gain, message):
    folder, _ = shots
    with pytest.raises(PufError, match=message):
        open_camera(f"file:{folder}", exposure_us=exposure, gain=gain)
    with open_camera(f"file:{folder}") as camera:
        camera.set_exposure(5000, 2.0)  # photos are already taken: accepted, nothing to set
        with pytest.raises(PufError, match=message):
            camera.set_exposure(exposure, gain)


# ---- OpenCV -------------------------------------------------------------------------------

def write_video(path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_a_recorded_video_plays_through_the_opencv_backend(tmp_path):
    """A video file is replayed frame by frame (as a camera's stream would come), wrapping
    round at its end; stills come at the size verify expects."""
    levels = [30, 90, 150, 210]
    frames = [np.full((960, 1280, 3), level, np.uint8) for level in levels]
    for frame, level in zip(frames, levels, strict=True):
        cv2.putText(frame, str(level), (100, 500), cv2.FONT_HERSHEY_SIMPLEX, 8, (0, 0, 0), 20)
    path = tmp_path / "session.avi"
    write_video(path, frames)
    with open_camera(f"opencv:{path}", exposure_us=2000, gain=1.0) as camera:
        assert camera.name == "video session.avi"
        # opening read the first frame to check the video; the preview is the next
        preview = camera.preview_frame(640)
        assert preview.shape == (480, 640, 3)
        assert abs(np.median(preview) - levels[1]) < 6
        still = camera.capture()
        assert still.source == f"opencv:{path}" and still.image.shape == (600, 800, 3)
        assert abs(np.median(still.image) - levels[2]) < 6
        camera.set_exposure(None, None)
        medians = [np.median(camera.preview_frame(320)) for _ in range(3)]
        assert np.allclose(medians, [levels[3], levels[0], levels[1]], atol=6)  # round again
    with pytest.raises(PufError, match="closed"):
        camera.preview_frame()
    camera.close()  # twice is fine


def test_a_small_video_is_not_enlarged(tmp_path):
    path = tmp_path / "small.avi"
    write_video(path, [picture(320, 240, 9)] * 3)
    with open_camera(f"opencv:{path}") as camera:
        frame = camera.capture()
        assert frame.image.shape == (240, 320, 3) and frame.exposure_us is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="V4L2 device paths")
@pytest.mark.parametrize("target", ["7", "63", "/dev/video63"])
def test_a_camera_that_is_not_there_is_a_clear_error(target, capfd):
    """No /dev/video device here: opening fails at once, and says what to check."""
    with pytest.raises(PufError, match=rf"no camera at opencv:{target}; is it plugged in"):
        open_camera(f"opencv:{target}")
    assert "WARN" not in capfd.readouterr().err  # OpenCV's own complaints are not shown


def test_other_opencv_targets(tmp_path):
    with pytest.raises(PufError, match="no camera or video file at opencv:"):
        open_camera(f"opencv:{tmp_path / 'missing.avi'}")
    fake = tmp_path / "fake.avi"
    fake.write_bytes(b"RIFF not a video at all")
    with pytest.raises(PufError, match="cannot open the video"):
        open_camera(f"opencv:{fake}")
