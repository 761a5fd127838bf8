"""The simulated data set's film: its style is part of the spec that reproduces it."""

import json

import numpy as np
import pytest

from edge_app.cli import main
from edge_app.errors import PufError
from fabrication.sim.film import FilmStyle, film_texture
from trainer.simdata import SimSpec, make_film, make_layout


def test_the_spec_chooses_the_film_style():
    spec = SimSpec("S1", 3, 1, 1, film_style="coarse,faceted=yes")
    layout = make_layout(spec)
    film = make_film(spec, layout)
    assert film.style == FilmStyle(grain_um=9.0, contrast=0.5, faceted=True)
    assert len(film.segments) > 0
    away = (-5000, -5000, 64, 64)  # film pixels far from every etched line
    np.testing.assert_array_equal(film.render(*away), film_texture(3, *away, film.style))
    assert make_film(SimSpec("S1", 3, 1, 1), layout).style == FilmStyle()


def test_a_bad_film_style_is_refused_before_anything_is_rendered(tmp_path, capsys):
    with pytest.raises(PufError, match="contrast must be between 0 and 2"):
        SimSpec("S1", 3, 1, 1, film_style="contrast=-1")
    assert main(["simdata", str(tmp_path / "data"), "--fields", "1x1", "--film-style", "lumpy"]) == 2
    assert "unknown film style 'lumpy'" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_data_sets_written_before_film_styles_read_as_the_default_film():
    old = {k: v for k, v in json.loads(json.dumps(SimSpec().__dict__)).items() if k != "film_style"}
    assert SimSpec(**old).film_style == "default"


def test_several_film_styles_are_taken_in_turn_batch_by_batch(tmp_path):
    main(["simdata", str(tmp_path / "data"), "--batches", "3", "--fields", "1x1", "--microscope-shots", "0",
          "--handheld-shots", "1", "--film-style", "coarse", "--film-style", "fine,faceted=yes",
          "--workers", "1"])
    batches = json.loads((tmp_path / "data" / "simdata.json").read_text())["batches"]
    assert [b["film_style"] for b in batches] == ["coarse", "fine,faceted=yes", "coarse"]
    assert [b["film_seed"] for b in batches] == [1, 2, 3]
    assert len(list((tmp_path / "data" / "crops").glob("*/h0.png"))) == 36
