"""Bad input never raises an unexplained traceback: whatever arrives as an image or an
image file, segmentation answers with a result or a PufError that says what is wrong."""

from __future__ import annotations

import io

import cv2
import numpy as np
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_app.errors import PufError
from edge_app.segment import SegmentationResult, load_image, segment
from tests.segment_support import LABEL_PX, make_layout, snap

DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32,
          np.float64, np.bool_, np.complex64]


def answers(image, label_px: float = 40.0, method: str = "fast") -> SegmentationResult | None:
    """segment() returns a result or raises PufError; anything else fails the test."""
    try:
        result = segment(image, label_px, method=method)
    except PufError as error:
        assert str(error)
        return None
    assert isinstance(result, SegmentationResult)
    for label in result.labels:
        assert label.crop.dtype == np.uint8 and np.isfinite(label.corners).all()
    return result


@settings(max_examples=150, deadline=None)
@given(image=hnp.arrays(st.sampled_from(DTYPES),
                        st.one_of(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0,
                                                   max_side=48),
                                  st.tuples(st.integers(0, 300), st.integers(0, 300),
                                            st.sampled_from([1, 2, 3, 4, 5])))),
       label_px=st.floats(8, 200), method=st.sampled_from(["fast", "paper"]))
@example(image=np.zeros((300, 300, 3), np.uint8), label_px=40.0, method="fast")
@example(image=np.full((300, 300), np.inf, np.float32), label_px=40.0, method="fast")
@example(image=np.full((300, 300), 65535, np.uint16), label_px=40.0, method="paper")
def test_any_array_gets_a_result_or_a_reason(image: np.ndarray, label_px: float, method: str) -> None:
    answers(image, label_px, method)


@settings(max_examples=60, deadline=None)
@given(noise=st.integers(0, 2**31), shape=st.sampled_from([(240, 320), (240, 320, 3)]),
       squares=st.integers(0, 6))
def test_random_pictures_of_squares(noise: int, shape, squares: int) -> None:
    """Odd drawings (squares of random sizes, lines, noise) are segmented without error."""
    rng = np.random.default_rng(noise)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    for _ in range(squares):
        x, y, side = (int(v) for v in rng.integers(0, 200, 3))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(image, (x, y), (x + side, y + side), colour, int(rng.integers(1, 12)))
    answers(image, float(rng.uniform(20, 150)))


def _encoded_field() -> dict[str, bytes]:
    image, _ = snap(make_layout(), 0)
    small = np.ascontiguousarray(image[200:700, 300:900])
    tiff = io.BytesIO()
    tifffile.imwrite(tiff, cv2.cvtColor(small, cv2.COLOR_BGR2RGB), photometric="rgb",
                     description='{"field": 0}', metadata=None)
    return {".png": cv2.imencode(".png", small)[1].tobytes(),
            ".jpg": cv2.imencode(".jpg", small)[1].tobytes(),
            ".tif": tiff.getvalue(),
            ".tif16": cv2.imencode(".tif", small.astype(np.uint16) * 257)[1].tobytes()}


ENCODED = _encoded_field()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(ENCODED)), cut=st.floats(0.0, 1.0))
def test_truncated_image_files(tmp_path, kind: str, cut: float) -> None:
    data = ENCODED[kind]
    path = tmp_path / f"field{kind[:4]}"
    path.write_bytes(data[:int(len(data) * cut)])
    try:
        image = load_image(path)
    except PufError as error:
        assert str(path) in str(error)
        return
    answers(image, 200 / 0.6 * 0.3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=2000),
                      st.text(max_size=500).map(str.encode),
                      st.sampled_from([b"\x89PNG\r\n\x1a\n" + bytes(40), b"II*\x00" + bytes(20),
                                       b"\xff\xd8\xff\xe0" + bytes(30), b"BM" + bytes(60)])),
       suffix=st.sampled_from([".png", ".tif", ".jpg", ".txt", ""]))
def test_files_that_are_not_images(tmp_path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except PufError:
        return
    answers(image)


def test_missing_and_empty_files_are_refused_in_words(tmp_path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, message in ((tmp_path / "nope.tif", "cannot read"), (empty, "empty file"),
                          (tmp_path, "cannot read")):
        try:
            load_image(path)
        except PufError as error:
            assert message in str(error)
        else:
            raise AssertionError(f"{path} was read")


def test_a_real_field_survives_the_round_trip_through_tiff(tmp_path) -> None:
    path = tmp_path / "field.tif"
    path.write_bytes(ENCODED[".tif"])
    image = load_image(path)
    assert image.shape == (500, 600, 3)
    assert answers(image, LABEL_PX) is not None


def test_a_float_image_of_huge_values_is_scaled_without_overflow():
    """Found by the property test above: -7e305 overflowed when scaled before clipping."""
    from edge_app.segment import as_uint8

    assert as_uint8(np.array([[[-7.049777e305]]])).tolist() == [[0]]  # taken as 0-1, scaled by 255
    assert as_uint8(np.array([[-1e308, 1e308]])).tolist() == [[0, 255]]
