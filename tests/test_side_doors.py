"""The packages are entered through the `puf` verbs (`edge_app.cli`) and the scripts in tools/:
no module of theirs runs as a script with arguments of its own (`python -m trainer.simdata`
and `python -m trainer.model_accuracy` were two; they are `puf simdata` and
tools/model_accuracy.py now)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_app", "fabrication", "trainer")
DOORS = {  # the modules that may run as a script, and why
    "edge_app/cli.py": "the puf command itself (python -m edge_app.cli)",
}


def side_doors(root: Path) -> list[str]:
    """The package modules under `root` with an ``if __name__ == "__main__":`` block."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            if any(isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                   and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
                   for node in tree.body):
                found.append(path.relative_to(root).as_posix())
    return found


def test_no_package_module_but_the_cli_runs_as_a_script():
    assert set(side_doors(ROOT)) <= set(DOORS)


def test_a_planted_script_is_found(tmp_path):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "renders.py").write_text('def main():\n    pass\n\n\nif __name__ == "__main__":\n'
                                                     '    main()\n')
    (tmp_path / "trainer" / "quiet.py").write_text('NAME = __name__\n')
    assert side_doors(tmp_path) == ["trainer/renders.py"]
