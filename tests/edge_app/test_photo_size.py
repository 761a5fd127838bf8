"""Photos too large for the device's memory are refused from their header, before they are
decoded (a 20000x20000 photo took 2.4 GB to verify): `edge_app.photo_size`, used by
`load_image` (puf verify, puf queries) and the app's file camera."""

import struct

import cv2
import numpy as np
import pytest
import tifffile

from edge_app.camera.file_source import FileSource, read_photo
from edge_app.errors import PufError
from edge_app.photo_size import MAX_PIXELS, MAX_PIXELS_ENV, image_dimensions, max_pixels
from edge_app.segment import load_image
from tests.photo_support import png_header


@pytest.fixture
def giant(tmp_path):
    path = tmp_path / "giant.png"
    path.write_bytes(png_header(20000, 20000) + bytes(64))
    return path


def test_a_20000_px_square_photo_is_refused_before_decoding(giant):
    assert giant.stat().st_size < 200
    with pytest.raises(PufError, match=r"giant\.png is 20000x20000 pixels \(400 megapixels\), over this device's "
                                       r"limit of 100 megapixels"):
        load_image(giant)


def test_the_app_file_camera_refuses_it_and_goes_on(giant, tmp_path):
    cv2.imwrite(str(tmp_path / "small.png"), np.full((48, 64, 3), 90, np.uint8))
    with pytest.raises(PufError, match=r"cannot read the photo .*giant\.png: it is 20000x20000 pixels"):
        read_photo(giant)
    camera = FileSource(tmp_path)
    with pytest.raises(PufError, match="over this device's limit"):
        camera.capture()
    assert camera.capture().image.shape == (48, 64, 3)


def test_the_limit_is_settable_by_argument_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.zeros((30, 40), np.uint8))
    assert load_image(path, 1200).shape == (30, 40)
    with pytest.raises(PufError, match="40x30 pixels"):
        load_image(path, 1199)
    with pytest.raises(PufError, match="40x30 pixels"):
        read_photo(path, 1199)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1199")
    assert max_pixels() == 1199
    with pytest.raises(PufError, match="limit of 0.001199 megapixels"):
        load_image(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(PufError, match=rf"\${MAX_PIXELS_ENV}: .*'lots'"):
        load_image(path)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    assert max_pixels() == MAX_PIXELS


@pytest.mark.parametrize("shape, suffix", [
    (shape, suffix) for shape in [(37, 53), (37, 53, 3), (2, 70000)] for suffix in (".png", ".jpg", ".bmp", ".tif")
    if shape[1] <= 65500 or suffix in (".png", ".tif")  # JPEG and BMP cannot be wider
])
def test_the_header_gives_the_size_opencv_decodes(shape, suffix):
    image = np.random.default_rng(1).integers(0, 255, shape, np.uint8)
    data = cv2.imencode(suffix, image)[1].tobytes()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image_dimensions(data) == (decoded.shape[1], decoded.shape[0]) == (shape[1], shape[0])


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_tiff_headers_of_either_byte_order_and_bigtiff(tmp_path, bigtiff, byteorder):
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, np.zeros((21, 34, 3), np.uint8), bigtiff=bigtiff, byteorder=byteorder,
                     photometric="rgb")
    assert image_dimensions(path.read_bytes()) == (34, 21)


def test_a_progressive_jpeg_with_metadata_first(tmp_path):
    image = np.random.default_rng(2).integers(0, 255, (41, 29, 3), np.uint8)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    comment = b"\xff\xfe" + struct.pack(">H", 2 + 300) + bytes(300)  # a COM segment before the frame
    assert image_dimensions(data[:2] + comment + data[2:]) == (29, 41)


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x10JFIF",
                                  b"II*\x00\xff\xff\x00\x00", b"MM\x00*\x00\x00\x00\x08\x00\x05", b"BM\x00",
                                  b"GIF89a" + bytes(20),
                                  b"RIFF\x00\x00\x00\x00WEBPVP8 "])
def test_a_header_cut_short_or_of_another_format_gives_no_size(data):
    assert image_dimensions(data) is None


def test_a_format_whose_size_is_not_read_is_refused_in_words(tmp_path):
    path = tmp_path / "photo.webp"
    ok, data = cv2.imencode(".webp", np.zeros((8, 8, 3), np.uint8))
    path.write_bytes(data.tobytes())
    with pytest.raises(PufError, match=r"photo\.webp is not a PNG, JPEG, TIFF or BMP image"):
        load_image(path)
