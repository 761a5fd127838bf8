import hashlib

import numpy as np
import pytest

from edge_app.layout import BatchLayout
from fabrication.laser_response import POWER_SERIES_MW, darkness, line_width_um
from fabrication.sim.film import FILM_PX_UM, EtchedFilm, film_texture
from fabrication.sim.laser import engrave_layout


def test_same_spot_renders_the_same_from_any_window():
    big = film_texture(5, 1000, 2000, 900, 700)
    for x, y in [(1000, 2000), (1311, 2437), (1700, 2500)]:
        small = film_texture(5, x, y, 150, 120)
        np.testing.assert_array_equal(small, big[y - 2000 : y - 1880, x - 1000 : x - 850])


def test_spots_and_films_are_independent():
    a = film_texture(5, 0, 0, 400, 400).ravel()
    far = film_texture(5, 20000, 0, 400, 400).ravel()
    other_film = film_texture(6, 0, 0, 400, 400).ravel()
    assert abs(np.corrcoef(a, far)[0, 1]) < 0.05
    assert abs(np.corrcoef(a, other_film)[0, 1]) < 0.05


def test_texture_has_grains_and_defects():
    texture = film_texture(5, 0, 0, 1000, 1000)
    assert 0.4 < texture.mean() < 0.8
    assert texture.std() > 0.12  # grains of varying brightness
    assert (texture < 0.1).mean() > 0.001  # voids and cracks
    # grains a few µm across: neighbouring pixels correlate, pixels 20 µm apart do not
    assert np.corrcoef(texture[:, :-1].ravel(), texture[:, 1:].ravel())[0, 1] > 0.5
    step = int(20 / FILM_PX_UM)
    assert abs(np.corrcoef(texture[:, :-step].ravel(), texture[:, step:].ravel())[0, 1]) < 0.2


def test_power_series_follows_the_paper():
    widths = [line_width_um(p) for p in POWER_SERIES_MW]
    dark = [darkness(p) for p in POWER_SERIES_MW]
    assert widths[0] == 0.0 and dark[0] == 0.0  # 7 mW leaves no visible change
    assert widths == sorted(widths) and dark == sorted(dark)
    assert len(set(widths)) == 5 and dark[-1] > 0.9  # 128 mW: distinct


@pytest.mark.parametrize("power, dark", [(7.0, False), (38.0, True), (128.0, True)])
def test_etched_border_darkens_the_film(tmp_path, power, dark):
    layout = BatchLayout("P", ("A",), label_cols=1, label_rows=1, field_cols=1, field_rows=1)
    film = EtchedFilm(3)
    engrave_layout(film, layout, power)
    film.save(tmp_path / "film.npz")
    film = EtchedFilm.load(tmp_path / "film.npz")
    plain = film_texture(3, 0, 0, 500, 500)
    etched = film.render(0, 0, 500, 500)
    edge = int((125 - 100 + 3) / FILM_PX_UM)  # inside the top border line of the label
    row = slice(edge - 2, edge + 2)
    ratio = etched[row, 60:440].mean() / plain[row, 60:440].mean()
    assert (ratio < 1 - 0.8 * darkness(power)) if dark else ratio == 1.0
    centre_free = (slice(360, 380), slice(360, 380))  # texture between glyph and border
    np.testing.assert_array_equal(etched[centre_free], plain[centre_free])


# sha256 of film_texture before film styles existed: the default film must never change
# (enrolled labels, data sets and figures were all made from it)
_DEFAULT_TEXTURE_SHA256 = {
    (5, 0, 0, 300, 200): "de3855715890c3630e4dbf6ea5591e5b930dc5ef2114c0dee369bfb9fe8d4d64",
    (7, -1234, 5678, 257, 301): "0fbca0622e714800ab3008e207366e08de3e54725c6a32c26612428b1a694528",
}


@pytest.mark.parametrize("args", sorted(_DEFAULT_TEXTURE_SHA256))
def test_default_style_is_todays_film_bit_for_bit(args):
    texture = film_texture(*args)
    assert texture.dtype == np.float32
    assert hashlib.sha256(np.ascontiguousarray(texture).tobytes()).hexdigest() == _DEFAULT_TEXTURE_SHA256[args]
