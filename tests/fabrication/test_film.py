import hashlib

import numpy as np
import pytest

from edge_app.errors import PufError
from edge_app.layout import BatchLayout
from fabrication.laser_response import POWER_SERIES_MW, darkness, line_width_um
from fabrication.sim.film import FILM_PRESETS, FILM_PX_UM, EtchedFilm, FilmStyle, film_texture
from fabrication.sim.laser import engrave_layout

_STYLES = [FilmStyle(), FILM_PRESETS["coarse"], FILM_PRESETS["fine"], FilmStyle(grain_um=4.5, faceted=True),
           FilmStyle(grain_um=20.0, contrast=2.0, faceted=True, mottling=3.0)]


@pytest.mark.parametrize("style", _STYLES, ids=lambda s: f"{s.grain_um:g}um-c{s.contrast:g}-f{int(s.faceted)}")
def test_same_spot_renders_the_same_from_any_window(style):
    big = film_texture(5, 1000, 2000, 900, 700, style)
    for x, y in [(1000, 2000), (1311, 2437), (1700, 2500)]:
        small = film_texture(5, x, y, 150, 120, style)
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


def _correlation_length_um(texture: np.ndarray) -> float:
    """Lag (µm, interpolated) at which the texture's autocorrelation along x and y falls to 0.5."""
    centred = texture - texture.mean()
    ac = np.fft.irfft2(np.abs(np.fft.rfft2(centred)) ** 2, s=texture.shape)
    r = 0.5 * (ac[0, :200] + ac[:200, 0]) / ac[0, 0]
    k = int(np.argmax(r < 0.5))
    return FILM_PX_UM * (k - 1 + (r[k - 1] - 0.5) / (r[k - 1] - r[k]))


@pytest.mark.parametrize("faceted", [False, True])
def test_grain_size_sets_the_texture_scale(faceted):
    lengths = {g: _correlation_length_um(film_texture(5, 0, 0, 800, 800, FilmStyle(grain_um=g, faceted=faceted,
                                                                                    mottling=0.0)))
               for g in (1.0, 3.0, 6.0, 12.0)}
    assert lengths[1.0] < lengths[3.0] < lengths[6.0] < lengths[12.0]
    # proportional to grain size once grains span several film pixels
    for g in (6.0, 12.0):
        assert 0.7 < (lengths[g] / lengths[3.0]) / (g / 3.0) < 1.5, lengths


def test_half_contrast_halves_the_relative_std():
    def relative_std(contrast: float) -> float:
        texture = film_texture(5, 0, 0, 1000, 1000, FilmStyle(contrast=contrast, mottling=0.0))
        return float(texture.std() / texture.mean())

    full, half = relative_std(1.0), relative_std(0.5)
    assert 0.45 < half / full < 0.6  # voids and cracks stay as dark as ever
    default_mean = film_texture(5, 0, 0, 500, 500).mean()
    assert abs(film_texture(5, 0, 0, 500, 500, FilmStyle(contrast=0.5)).mean() - default_mean) < 0.02


def test_faceted_grains_are_flat_faces_not_domes():
    smooth = film_texture(5, 0, 0, 600, 600, FilmStyle(grain_um=10.0, mottling=0.0))
    faceted = film_texture(5, 0, 0, 600, 600, FilmStyle(grain_um=10.0, faceted=True, mottling=0.0))
    assert abs(np.corrcoef(smooth.ravel(), faceted.ravel())[0, 1]) > 0.5  # the same grains
    # a dome changes a little between most neighbouring pixels; a flat face not at all,
    # and its sharp edges are steps
    steps = {name: np.abs(np.diff(t, axis=1)) for name, t in [("smooth", smooth), ("faceted", faceted)]}
    assert (steps["faceted"] == 0).mean() > 0.6 > (steps["smooth"] == 0).mean()
    inside = (steps["faceted"] > 0) & (steps["smooth"] < 0.02)  # facet edges inside a grain
    assert inside.mean() > 0.02
    assert np.median(steps["faceted"][inside]) > 0.03


def test_mottling_scales_the_slow_variation():
    def patchiness(mottling: float) -> float:
        texture = film_texture(5, 0, 0, 1200, 1200, FilmStyle(mottling=mottling))
        blocks = texture.reshape(12, 100, 12, 100).mean(axis=(1, 3))  # 50 µm patches
        return float(blocks.std() / blocks.mean())

    none, default, strong = patchiness(0.0), patchiness(1.0), patchiness(3.0)
    assert none < 0.4 * default
    assert 2.0 < strong / default < 4.0


@pytest.mark.parametrize("style", _STYLES[1:], ids=lambda s: f"{s.grain_um:g}um-c{s.contrast:g}-f{int(s.faceted)}")
def test_styles_are_deterministic_and_differ_from_the_default(style):
    texture = film_texture(9, 300, 400, 256, 256, style)
    np.testing.assert_array_equal(texture, film_texture(9, 300, 400, 256, 256, style))
    assert not np.array_equal(texture, film_texture(9, 300, 400, 256, 256))
    assert np.isfinite(texture).all() and texture.min() >= 0


def test_style_is_saved_with_the_film(tmp_path):
    style = FilmStyle(grain_um=7.5, contrast=0.6, faceted=True, mottling=2.0)
    film = EtchedFilm(4, style=style)
    film.add_segment(10, 10, 90, 10, 128.0)
    film.save(tmp_path / "film.npz")
    loaded = EtchedFilm.load(tmp_path / "film.npz")
    assert loaded.style == style and loaded.seed == 4
    np.testing.assert_array_equal(loaded.render(0, 0, 200, 100), film.render(0, 0, 200, 100))


def test_a_film_saved_before_styles_loads_as_the_default(tmp_path):
    np.savez_compressed(tmp_path / "old.npz", seed=np.int64(4), segments=np.zeros((0, 5)))
    film = EtchedFilm.load(tmp_path / "old.npz")
    assert film.style == FilmStyle()
    np.testing.assert_array_equal(film.render(0, 0, 64, 64), film_texture(4, 0, 0, 64, 64))


def test_presets_and_overrides_parse():
    assert FilmStyle.parse("default") == FilmStyle()
    assert FilmStyle.parse("coarse") == FilmStyle(grain_um=9.0, contrast=0.5)
    assert FilmStyle.parse("coarse, faceted=yes,mottling=2") == FilmStyle(9.0, 0.5, True, 2.0)
    assert FilmStyle.parse("grain_um=1") == FILM_PRESETS["fine"]
    assert FilmStyle.from_json(FILM_PRESETS["coarse"].to_json()) == FILM_PRESETS["coarse"]


@pytest.mark.parametrize("bad, message", [
    (dict(grain_um=0), "grain_um must be between 1 and 20"),
    (dict(grain_um=2.2), "multiple of the film's 0.5"),
    (dict(grain_um=float("nan")), "grain_um must be a number"),
    (dict(contrast=-0.5), "contrast must be between 0 and 2"),
    (dict(mottling=5), "mottling must be between 0 and 3"),
    (dict(faceted="no"), "faceted must be true or false"),
])
def test_bad_styles_are_refused(bad, message):
    with pytest.raises(PufError, match=message):
        FilmStyle(**bad)


@pytest.mark.parametrize("text, message", [
    ("grainy", "unknown film style 'grainy'; presets: default, coarse, fine"),
    ("coarse,size=3", "NAME one of grain_um, contrast, faceted, mottling"),
    ("contrast=high", "contrast must be a number"),
    ("faceted=maybe", "faceted must be yes or no"),
    ("grain_um=0.5", "grain_um must be between 1 and 20"),
])
def test_bad_style_text_is_refused(text, message):
    with pytest.raises(PufError, match=message):
        FilmStyle.parse(text)
