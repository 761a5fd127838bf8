"""`puf keygen`: the private key is readable by its owner only, whatever was there before;
a failed write leaves nothing that blocks the re-run; a path that cannot hold a key is a
clear error."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.cli import main
from edge_app.errors import PufError
from tests.faults import limited
from trainer.keys import generate_keypair, load_private_key

ROOT = Path(__file__).resolve().parents[2]


def test_force_over_a_world_readable_key_leaves_the_new_key_owner_only(tmp_path):
    old = tmp_path / "factory.key"
    old.write_text("an old key, readable by all")
    old.chmod(0o644)
    (tmp_path / "factory.pub").write_text("an old public key")
    private, public, _ = generate_keypair(tmp_path / "factory", overwrite=True)
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    load_private_key(private)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["factory.key", "factory.key.signed.json",
                                                         "factory.pub"]  # no temporary left


def test_a_full_disk_leaves_no_empty_key_and_the_re_run_works(tmp_path):
    keygen = [sys.executable, "-c", f"import sys; from edge_app.cli import main; "
              f"sys.exit(main(['keygen', {str(tmp_path / 'factory')!r}]))"]
    # a disk that fills after 64 bytes of a file
    done = subprocess.run(limited(keygen, "RLIMIT_FSIZE", 64), cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "cannot write" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
    assert main(["keygen", str(tmp_path / "factory")]) == 0  # no --force needed
    load_private_key(tmp_path / "factory.key")


def test_a_key_path_that_cannot_hold_files_is_a_clear_error(capsys):
    with pytest.raises(PufError, match="cannot write /proc/k.key"):
        generate_keypair(Path("/proc/k"))
    assert main(["keygen", "/proc/k"]) == 2
    assert "cannot write /proc/k.key" in capsys.readouterr().err
    assert not os.path.exists("/proc/k.key")
