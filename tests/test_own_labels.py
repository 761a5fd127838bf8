"""The "Your own labels" tutorial's walkthrough, run as written, at a tiny size.

The commands are the tutorial's: `walkthrough_lines()` reads the first ```bash block of
docs/tutorials/own-labels.md and the fixture runs every command line of it in order, in a
folder under tmp (the working directory, as a user's shell would be). How lines map:

- `#` lines and `# ...` tails are comments; a tail `# exit N: ...` (or `... (or M: ...)`) names
  the exit statuses the walkthrough promises, else 0 is expected. Each line's status is asserted.
- `puf ...` lines run in-process through `edge_app.cli.main`, with `--json` added for the verbs
  that print a report (kept per line for the assertions below); a word with `*` is expanded as
  the shell would (sorted, and it must match something). Other lines (`cp`) run as a subprocess.
- `TINY`, a short table of exact substitutions, maps the tutorial's sizes to tiny ones and swaps in
  this test's own glyphs and film; each must occur in the block, so an edit that drops one fails.
  The glyphs are not the example's (docs/examples/own_glyphs.svg) but 9 letters of the Hershey
  font futural; the film not the `coarse` preset but faceted grains of 5 um at 0.7 contrast.
- Not a command, and so test set-up: before the first command naming `scans/`, the factory's
  camera hands the fields over (`hand_over`): PNGs named by timestamp, turned a quarter turn,
  without metadata. The device's folder ($PUF_HOME) and its trusted keys ($XDG_CONFIG_HOME) are
  under tmp.
"""

import contextlib
import glob
import io
import json
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_app.cli import main as puf  # noqa: E402
from fabrication.registry import Registry  # noqa: E402

# Keras saving a model trips numpy 2's __array__ copy warning (not ours; see tests/trainer)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "own-labels.md"
OWN_GLYPHS = "font:futural:FGJKLPRY4"
TINY = {
    "glyphs.svg": OWN_GLYPHS,
    "--film-style coarse": "--film-style grain_um=5,contrast=0.7,faceted=yes",
    "--fields 10x10": "--fields 4x2",
    "--steps 600": ("--steps 100 --batch-size 32 --set lr=0.003 --set warmup_steps=10 --set val_frac=0.2 "
                    "--set eval_every=100"),
    "--handheld 2": "--handheld 1",
    "--query-far 1e-5": "--query-far 1e-3 --frr-bound 0.1",  # 1e-5 needs more never-enrolled photos
}
NO_JSON = {"photograph"}  # verbs without a --json report


@dataclass
class Step:
    line: str  # as the tutorial has it
    argv: list[str]  # as run
    status: int
    report: dict | None


def walkthrough_lines() -> list[str]:
    """The command lines of the tutorial's code block, comments included."""
    text = TUTORIAL.read_text()
    block = text[text.index("```bash\n") + 8:]
    return [line for line in block[:block.index("```")].splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def expected_statuses(line: str) -> set[int]:
    tail = line.partition("#")[2]
    return {int(n) for n in re.findall(r"\b(\d+):", tail)} if tail.strip().startswith("exit") else {0}


def command(line: str) -> str:
    """The line without its comment."""
    return shlex.join(shlex.split(line, comments=True))


def tiny(line: str) -> str:
    for documented, small in TINY.items():
        line = line.replace(documented, small)
    return line


def hand_over(batch: Path, scans: Path) -> None:
    """The microscope's fields as a factory's camera leaves them: PNG, timestamp names,
    turned a quarter turn, no manifest or metadata."""
    scans.mkdir()
    manifest = json.loads((batch / "fields" / "manifest.json").read_text())
    for entry in manifest["fields"]:
        image = cv2.imread(str(batch / "fields" / entry["file"]), cv2.IMREAD_COLOR)
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(1_764_496_500 + 11 * entry["field"]))
        cv2.imwrite(str(scans / f"IMG_{stamp}.png"), np.ascontiguousarray(np.rot90(image)))


def run_puf(argv: list[str]) -> tuple[int, dict | None]:
    json_report = argv[0] not in NO_JSON
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = puf([*argv, "--json"] if json_report else argv)
    output = buffer.getvalue()
    return status, (json.loads(output) if json_report and output.strip() else None)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    work = tmp_path_factory.mktemp("own")
    lines = walkthrough_lines()
    commands = "\n".join(command(line) for line in lines)
    assert all(documented in commands for documented in TINY), "a tutorial size the test maps is gone"
    steps: list[Step] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("PUF_HOME", str(work / "device"))
        mp.setenv("XDG_CONFIG_HOME", str(work / "config"))  # the trusted keys, never the user's
        for name in ("PUF_BUNDLE", "PUF_REGISTRY", "PUF_TRUSTED_KEYS"):
            mp.delenv(name, raising=False)
        for line in lines:
            words = shlex.split(tiny(command(line)))
            if "scans/" in words and not (work / "scans").exists():
                hand_over(work / "B0001", work / "scans")
            argv = []
            for word in words:
                matches = sorted(glob.glob(word)) if "*" in word else [word]
                assert matches, (line, word)
                argv += matches
            if argv[0] == "puf":
                status, report = run_puf(argv[1:])
            else:
                status, report = subprocess.run(argv, cwd=work).returncode, None
            assert status in expected_statuses(line), (line, status)
            steps.append(Step(line, argv, status, report))
        # not a tutorial step: a per-comparison FAR from these few pairs is refused, not signed
        refused = io.StringIO()
        with contextlib.redirect_stderr(refused), contextlib.redirect_stdout(io.StringIO()):
            refused_status = puf(["evaluate", "--bundle", "bundles/ft", "--queries", "data/recaptures",
                                  "--far", "1e-3", "--key", "keys/factory.key"])
    return {"work": work, "steps": steps, "refused": refused.getvalue(), "refused_status": refused_status}


def step(walkthrough, start: str) -> Step:
    """The one step whose tutorial line starts with `start`."""
    found = [s for s in walkthrough["steps"] if s.line.startswith(start)]
    assert len(found) == 1, (start, [s.line for s in found])
    return found[0]


def test_the_walkthrough_covers_the_path_from_glyphs_to_the_field():
    verbs = [shlex.split(line, comments=True)[:2] for line in walkthrough_lines()]
    for verb in ("patterns", "design", "etch", "photograph", "segment", "hold-out", "train", "export", "keygen",
                 "enroll", "queries", "evaluate", "device", "verify"):
        assert ["puf", verb] in verbs, verb
    assert sum(v == ["puf", "verify"] for v in verbs) == 3  # genuine, never enrolled, another film


def test_the_device_trusts_the_factory_key_in_its_own_folders_only(walkthrough):
    keys = list((walkthrough["work"] / "config" / "puf" / "trusted_keys").iterdir())
    assert [k.name for k in keys] == ["factory.pub"]
    assert keys[0].read_bytes() == (walkthrough["work"] / "keys" / "factory.pub").read_bytes()


def test_plain_pngs_with_timestamp_names_and_a_turned_camera_are_cut_with_their_glyphs(walkthrough):
    summary = step(walkthrough, "puf segment scans/").report
    assert summary["labels"]["found"] == 96
    assert summary["field_order"] == "sorted file names"
    assert summary["pixel_size_um"]["from"] == "the labels' size in the images"
    assert abs(summary["rotation"]["deg"]) == 90  # found from the glyphs
    with Registry(walkthrough["work"] / "registry.sqlite") as registry:
        layout = registry.batch_layout("B0001")
        labels = registry.labels("B0001")
    assert layout.pattern_set.name == "futural-9"
    # the timestamp order is the field order: every label's glyph is the one designed for its slot
    assert all(lb.pattern == layout.pattern_of(lb.field, lb.slot) for lb in labels)
    assert all(lb.glyph_pattern == lb.pattern for lb in labels if lb.status == "found")


def test_one_capture_a_label_trains_and_says_its_figures_are_optimistic(walkthrough):
    train, export = step(walkthrough, "puf train").report, step(walkthrough, "puf export").report
    assert train["optimistic"] is True and train["init"]["from"].endswith("models/default")
    assert train["init"]["pattern_head"] == "re-initialised"  # another pattern set than the shipped model's
    assert export["pattern_set"]["name"] == "futural-9" and export["pattern_classes"][0] == "F"
    assert export["decision"]["calibrated"] is False


def test_the_threshold_is_refused_from_too_few_pairs_then_calibrated(walkthrough):
    assert walkthrough["refused_status"] == 2
    assert "FAR 0.001 needs at least 2,995 impostor comparisons" in walkthrough["refused"]
    # calibrated per query at the bundle's largest shard (84 labels enrolled over 9 glyphs), the tutorial's way
    evaluate = step(walkthrough, "puf evaluate").report
    decision = evaluate["decision"]
    shards = [s["labels"] for s in evaluate["per_query"]["shards"]]
    assert decision["calibrated"] is True and decision["query_far"] == 1e-3
    assert decision["labels_per_shard"] == max(shards) >= 84 // 9
    assert decision["query_far_at_threshold"] <= 1e-3 * 1.001 and 0 < decision["threshold"] < 1
    assert evaluate["decisions_at_threshold"]["impostor_accepted"] == 0.0
    queries = step(walkthrough, "puf queries").report
    assert queries["photos"] == 84 and queries["queries"] >= 80  # 7 fields of 12 labels; a few may not cut


def test_a_field_held_out_by_command_is_never_enrolled(walkthrough):
    assert step(walkthrough, "puf hold-out").report["held_out"] == 12
    enroll = step(walkthrough, "puf enroll").report
    assert enroll["skipped"] == {"held out": 12} and enroll["labels_added"] == 84


def photo_outcomes(walkthrough, kind: str) -> list[tuple[str, str | None, str]]:
    """(verdict, matched id, true id from the photo's name LABEL_ID_K.jpg) of the label nearest
    each photo's centre."""
    verify = step(walkthrough, f"puf verify field/{kind}/")
    by_photo: dict[str, list[dict]] = {}
    for verdict in verify.report["verdicts"]:
        by_photo.setdefault(verdict["source"].split("#")[0], []).append(verdict)
    photos = verify.argv[2:]
    assert len(photos) == len(by_photo) > 0
    outcomes = []
    for path in photos:
        centre = np.array([400.0, 300.0])
        own = min(by_photo[path], key=lambda v: np.linalg.norm(np.mean(v["corners_px"], axis=0) - centre)
                  if v.get("corners_px") else 1e9)
        outcomes.append((own["verdict"], own["label_id"], Path(path).stem.rpartition("_")[0]))
    return outcomes


def verdicts(walkthrough, kind: str) -> list[dict]:
    return step(walkthrough, f"puf verify field/{kind}/").report["verdicts"]


def test_the_verifier_accepts_its_labels_and_tells_counterfeits_apart(walkthrough):
    genuine = photo_outcomes(walkthrough, "genuine")
    assert len(genuine) == 24  # fields 0 and 6, 12 labels each
    # a pattern head trained 100 steps on 67 labels reads some glyphs wrong; where it and the glyph
    # templates disagree the photo is retaken (unreadable), never refused or taken for another label
    assert all(v == "unreadable" or (v == "genuine" and got == want) for v, got, want in genuine)
    assert sum(v == "genuine" for v, _, _ in genuine) >= len(genuine) // 2
    for kind in ("never", "other"):
        assert all(v in ("counterfeit", "unreadable") for v, _, _ in photo_outcomes(walkthrough, kind))
    # the device decides with the threshold the re-captures calibrated, from the bundle it installed
    threshold = step(walkthrough, "puf evaluate").report["decision"]["threshold"]
    assert {v["threshold"] for kind in ("genuine", "never", "other") for v in verdicts(walkthrough, kind)} == {
        threshold}
    # the shipped fingerprint tells the new film's labels far apart: every genuine photo
    # scores well above every never-enrolled label and every copy of the job on another film
    scores = {kind: [v["score"] for v in verdicts(walkthrough, kind) if v["score"] is not None]
              for kind in ("genuine", "never", "other")}
    assert min(scores["genuine"]) > max(scores["never"] + scores["other"]) + 0.2
