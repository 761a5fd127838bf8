"""`puf train --list-settings`: every key `--set` accepts, its default and its meaning; the
meanings (trainer.settings) cover the config's keys exactly, so a new setting must say what it does."""

import json
import subprocess
import sys
from pathlib import Path

from trainer import settings
from trainer.train import load_config

PUF = Path(sys.executable).parent / "puf"


def test_every_setting_has_a_meaning_and_every_meaning_a_setting():
    assert list(settings.MEANINGS) != []
    assert set(settings.defaults()) == set(settings.MEANINGS)


def test_every_listed_key_is_one_set_accepts_with_its_default():
    for key, default in settings.defaults().items():
        value = list(default) if isinstance(default, tuple) else default
        config = load_config(None, [f"{key}={json.dumps(value)}"])
        head, _, field = key.partition(".")
        got = getattr(config, head)[field] if field else getattr(config, head)
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_list_settings_prints_each_key_its_default_and_meaning():
    done = subprocess.run([PUF, "train", "--list-settings"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert set(rows) == set(settings.MEANINGS)
    assert "0.002" in rows["lr"] and "peak learning rate" in rows["lr"]
    assert "'mobile_s'" in rows["backbone"] and "112" in rows["preprocess.input_size"]


def test_train_without_a_run_folder_says_so():
    done = subprocess.run([PUF, "train", "--steps", "5"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "puf train: error: give the run folder RUN_DIR (or --list-settings)" in done.stderr
