"""The documentation: README.md short, the site built offline with `mkdocs build --strict`
(a broken link fails it), and every generated page (command line, settings, schemas, bundle
format, exit statuses, results, README's blocks) what `tools/docs_pages.py` writes from the code
and the results files now: a verb's new option, or a results file re-measured, without its page
fails here."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs")
pytest.importorskip("tensorflow")  # the reference covers every verb: all of them must be installed


def generator():
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "tools" / "docs_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OFFLINE = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": "",
           "NO_MKDOCS_2_WARNING": "1"}


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([Path(sys.executable).parent / "mkdocs", "build", "--strict", "-f", str(config),
                           "-d", str(site)], capture_output=True, text=True, env=OFFLINE, timeout=240)


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024


def test_the_generated_pages_are_what_the_code_and_the_results_files_say():
    done = subprocess.run([sys.executable, ROOT / "tools" / "docs_pages.py", "--check"], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr


def test_the_command_line_page_catches_a_planted_undocumented_option():
    docs = generator()
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert docs.undocumented(page, docs.puf_parser()) == []
    parser = docs.puf_parser()
    docs.commands(parser)["verify"].add_argument("--planted", help="an option no page mentions")
    docs.commands(parser)["root sign"].add_argument("--planted-too", help="nor this one")
    assert docs.undocumented(page, parser) == ["puf root sign --planted-too", "puf verify --planted"]
    assert docs.cli_reference(parser) != page


def test_a_results_file_changed_makes_its_page_stale(tmp_path, monkeypatch):
    docs = generator()
    results = tmp_path / "results"
    shutil.copytree(ROOT / "tools" / "results", results)
    data = json.loads((results / "bench_verify.json").read_text())
    data["threshold"] = 0.9
    (results / "bench_verify.json").write_text(json.dumps(data))
    monkeypatch.setattr(docs, "RESULTS", results)
    written, pictures = docs.pages(draw=False)
    assert "| `threshold` | 0.9 |" in written[ROOT / "docs" / "results" / "bench_verify.md"]
    # its page only: the key figures take the bundle's threshold from the bundle itself
    assert docs.stale(written, pictures) == ["docs/results/bench_verify.md"]
    # the run the key figures' accuracy comes from: its page and the key figures
    shutil.copy(ROOT / "tools" / "results" / "bench_verify.json", results / "bench_verify.json")
    data = json.loads((results / f"{docs.DISTINCT_RUN}.json").read_text())
    data["threshold"] = 0.9
    (results / f"{docs.DISTINCT_RUN}.json").write_text(json.dumps(data))
    written, pictures = docs.pages(draw=False)
    assert "model sim-20261130 at threshold 0.9000" in written[ROOT / "docs" / "explanation" / "paper.md"]
    assert docs.stale(written, pictures) == ["docs/explanation/paper.md", f"docs/results/{docs.DISTINCT_RUN}.md"]


def test_every_results_file_has_a_page_with_its_machine_and_date():
    docs = generator()
    for path in sorted((ROOT / "tools" / "results").glob("*.json")):
        page = (ROOT / "docs" / "results" / f"{path.stem}.md").read_text()
        assert f"Results file `tools/results/{path.name}`; machine: " in page and "; date: 20" in page, path.name
        assert f"({path.stem}.md)" in (ROOT / "docs" / "results" / "index.md").read_text()
    assert docs.stale(*docs.pages(draw=False)) == []


def test_the_site_builds_offline_and_strict(tmp_path):
    done = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "edge_app.verify.Verifier" in api and "edge_app.bundle_format.Manifest" in api
    assert "--list-settings" in (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert (tmp_path / "site" / "results" / "bench_paper_scale_sim-20261130_60k" / "det.png").is_file()


def test_a_broken_link_fails_the_build(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    config = (ROOT / "mkdocs.yml").read_text().replace("paths: [.]", f"paths: [{ROOT}]")
    (tmp_path / "mkdocs.yml").write_text(config)
    page = tmp_path / "docs" / "how-to" / "keys.md"
    page.write_text(page.read_text() + "\nSee [the old guide](../how-to/rotate-keys.md).\n")
    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "rotate-keys.md" in done.stderr
