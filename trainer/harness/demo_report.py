"""What `puf demo` shows: its results and times beside the paper's, and its pictures.

The paper's figures are quoted as the paper gives them; its search
ran over 4,155,600 enrolled vectors, this demo's over one batch (see `puf bench` for the
paper's scale).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_app.segment import crop_label
from fabrication.registry import Registry
from fabrication.sim.clone import PrintModel
from trainer.charts import histograms_png
from trainer.harness import paper
from trainer.harness.demo_queries import KINDS, Query
from trainer.images import read_bgr

KIND_TEXT = {
    "genuine": "enrolled labels, new handheld photos (genuine)",
    "held_out": "labels of the batch never enrolled (counterfeit)",
    "other_film": "the batch's laser job etched into another film (counterfeit)",
    "clone": "enrolled labels photographed, printed, re-photographed (clone)",
}
PAPER = {  # the paper's figures (`trainer.harness.paper`), as this report quotes them
    "genuine_accuracy": f"{paper.percent(paper.WITH_CLASSIFICATION[0])} real",
    "counterfeit_accuracy": f"{paper.percent(paper.WITH_CLASSIFICATION[1])} fake",
    "etch": f"{paper.ETCH[0]:,} labels in {paper.ETCH[1]} s",
    "photograph": f"{paper.PHOTOGRAPH[0]:,} images in ~{paper.PHOTOGRAPH[1]} min",
    "segment": f"{paper.SEGMENT[0]:,} labels in ~{paper.SEGMENT[1]} s",
    "segment_field": f"~{paper.SEGMENT_FIELD_MS} ms",
    "model_ms": f"{paper.MODEL_MS[0]:g} ms (extraction)",
    "search_ms": f"{paper.typical(paper.SEARCH_SHARD_MS):g} ms in shard, {paper.SEARCH_WHOLE_MS[0]:g} ms whole "
                 f"({paper.VECTORS:,} vectors)",
    "total_ms": f"~{paper.TOTAL_MS} ms",
}
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GREEN, _RED, _GREY, _AMBER = (60, 170, 60), (50, 50, 220), (120, 120, 120), (0, 160, 230)
_KIND_COLOUR = {"genuine": "tab:green", "held_out": "tab:blue", "other_film": "tab:purple", "clone": "tab:red"}


def _stats(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p90": None}
    return {"median": round(float(np.median(values)), 3), "p90": round(float(np.percentile(values, 90)), 3)}


def summarise(queries: list[Query], threshold: float) -> dict:
    """Per kind: photos, accepted, rejected, unreadable, correct and its rate over readable
    photos, scores; and the verify times per photo."""
    results = {}
    for kind in KINDS:
        mine = [q for q in queries if q.kind == kind]
        if not mine:
            continue
        readable = [q for q in mine if q.outcome != "unreadable"]
        scores = [q.verdict["score"] for q in mine if q.verdict["score"] is not None]
        correct = sum(q.correct for q in readable)
        results[kind] = {
            "photos": len(mine),
            "accepted": sum(q.outcome == "accepted" for q in mine),
            "rejected": sum(q.outcome == "rejected" for q in mine),
            "unreadable": len(mine) - len(readable),
            "correct": correct,
            "rate": round(correct / len(readable), 5) if readable else None,
            "wrong_label": sum(q.kind == "genuine" and q.outcome == "accepted" and not q.correct for q in mine),
            "score": {"median": round(float(np.median(scores)), 4), "min": round(float(min(scores)), 4),
                      "max": round(float(max(scores)), 4)} if scores else None,
        }
    read = [q for q in queries if q.outcome != "unreadable"]
    times = {part: _stats([q.verdict["timings_ms"][part] for q in read]) for part in ("segment", "model", "search",
                                                                                        "total")}
    times["wall"] = _stats([q.wall_ms for q in queries])
    return {"threshold": threshold, "results": results, "verify_ms": times}


def _rate(r: dict) -> str:
    return "-" if r["rate"] is None else f"{100 * r['rate']:.2f}%"


def _ms(s: dict) -> str:
    return "-" if s["median"] is None else f"{s['median']:.2f} / {s['p90']:.2f} ms"


def tables(report: dict) -> str:
    """The results and times as markdown tables, beside the paper's figures."""
    s, stages, batch = report["summary"], report["stages"], report["batch"]
    lines = [f"results: threshold {s['threshold']:.4f}, {batch['enrolled']:,} labels enrolled, "
             f"{batch['held_out']:,} held out (never enrolled)", "",
             "| photos of | photos | accepted | rejected | unreadable | correct (of readable) "
             "| score median [min, max] | paper |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for kind, r in s["results"].items():
        score = "-" if r["score"] is None else f"{r['score']['median']:.3f} [{r['score']['min']:.3f}, " \
                                               f"{r['score']['max']:.3f}]"
        quoted = PAPER["genuine_accuracy"] if kind == "genuine" else PAPER["counterfeit_accuracy"] \
            if kind != "clone" else "-"
        wrong = f" ({r['wrong_label']} as another label)" if r["wrong_label"] else ""
        lines.append(f"| {KIND_TEXT[kind]} | {r['photos']} | {r['accepted']}{wrong} | {r['rejected']} | "
                     f"{r['unreadable']} | {_rate(r)} | {score} | {quoted} |")
    t = s["verify_ms"]
    fields, labels = batch["fields"], batch["labels"]
    lines += ["", "times (median / p90 per photo where it says so)", "",
              "| stage | this run | paper |", "| --- | --- | --- |",
              f"| design: CAD, laser job, stage positions ({fields} fields) | {stages['design']:.1f} s | - |",
              f"| etch: G-code through the simulated GRBL into the simulated film ({labels:,} labels) | "
              f"{stages['etch']:.1f} s | {PAPER['etch']} |",
              f"| photograph: simulated microscope, {fields} fields (rendering time, not a stage) | "
              f"{stages['photograph']:.1f} s | {PAPER['photograph']} |",
              f"| segment: {fields} fields, {labels:,} labels (the verb: read, cut, write crops and registry) | "
              f"{stages['segment']:.1f} s | {PAPER['segment']} |",
              f"| segment: one 1920x1440 field, the method alone | {_ms(stages['segment_field_ms'])} | "
              f"{PAPER['segment_field']} |",
              f"| enroll: {batch['enrolled']:,} labels, shipped model, signed | {stages['enroll']:.1f} s | - |",
              f"| verify: segment the handheld photo | {_ms(t['segment'])} | - |",
              f"| verify: model (embedding + pattern), int8 | {_ms(t['model'])} | {PAPER['model_ms']} |",
              f"| verify: search the predicted pattern's shard | {_ms(t['search'])} | {PAPER['search_ms']} |",
              f"| verify: total, photo to verdict | {_ms(t['total'])} | {PAPER['total_ms']} |",
              f"| handheld photos: simulate, write, verify ({report['photos']}) | {stages['queries']:.1f} s | - |",
              f"| the whole demo | {stages['total']:.1f} s | - |"]
    return "\n".join(lines)


# ---- pictures ----------------------------------------------------------------------------

def _text(image: np.ndarray, text: str, at: tuple[int, int], scale: float = 0.6, colour=(0, 0, 0),
          thickness: int = 1) -> None:
    cv2.putText(image, text, (int(at[0]), int(at[1])), _FONT, scale, colour, thickness, cv2.LINE_AA)


def _caption(picture: np.ndarray, lines: list[str], scale: float = 0.6) -> np.ndarray:
    """A white strip with lines of text above a picture."""
    strip = np.full((14 + 26 * len(lines), picture.shape[1], 3), 255, np.uint8)
    for i, line in enumerate(lines):
        _text(strip, line, (10, 28 + 26 * i), scale, (0, 0, 0), 1)
    return np.vstack([strip, picture])


def _write(path: Path, picture: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 88] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), picture, params):
        raise OSError(f"cannot write {path}")
    return path


def field_picture(overlay: Path, field: int, found: int, rejected: list[str], out: Path) -> Path:
    """The segmentation overlay of one field, captioned."""
    picture = read_bgr(overlay)
    lines = [f"Field {field} as `puf segment --overlay` drew it: {found} labels found (green: id, dot at the "
             "design's top-left corner),"]
    if rejected:
        lines.append(f"{len(rejected)} of its labels cut by the field's edge (yellow, a stage slip: recorded as "
                     "rejected, never enrolled),")
    lines.append("red: candidates rejected (parts of the neighbouring fields' labels, cut by the image edge).")
    return _write(out, _caption(picture, lines, 0.55))


def _outline(photo: np.ndarray, corners, colour) -> None:
    cv2.polylines(photo, [np.round(np.asarray(corners)).astype(np.int32)], True, colour, 3, cv2.LINE_AA)


def _verdict_line(v: dict) -> tuple[str, tuple]:
    if v["verdict"] == "unreadable":
        return "UNREADABLE: " + v["reason"][:70], _AMBER
    sign = ">=" if v["score"] >= v["threshold"] else "<"
    head = f"GENUINE {v['label_id']}" if v["verdict"] == "genuine" else "COUNTERFEIT"
    return f"{head}   score {v['score']:.3f} {sign} threshold {v['threshold']:.3f}", \
        _GREEN if v["verdict"] == "genuine" else _RED


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    image = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def verdict_picture(query: Query, enrolled_crop: Path | None, title: str, out: Path) -> Path:
    """The handheld photo with the label found and its verdict, and the label's crop
    beside the enrolled crop of the label it shows (or claims to be)."""
    photo = read_bgr(query.photo)
    v = query.verdict
    line, colour = _verdict_line(v)
    crop = crop_label(photo, np.asarray(v["corners_px"] or query.corners_px))
    if v["corners_px"]:
        _outline(photo, v["corners_px"], colour)
    size = 256
    column = np.full((max(photo.shape[0], 2 * size + 80), size + 20, 3), 255, np.uint8)
    column[30:30 + size, 10:10 + size] = _tile(crop, size)
    _text(column, "this photo's label, deskewed", (10, 22), 0.5)
    if enrolled_crop is not None and enrolled_crop.exists():
        column[size + 70:2 * size + 70, 10:10 + size] = _tile(read_bgr(enrolled_crop), size)
        _text(column, f"enrolled {query.label_id} (factory)", (10, size + 62), 0.5)
    else:
        _text(column, f"{query.label_id}: never enrolled", (10, size + 62), 0.5)
    photo = np.vstack([photo, np.full((column.shape[0] - photo.shape[0], photo.shape[1], 3), 255, np.uint8)])
    body = np.hstack([photo, column])
    head = np.full((70, body.shape[1], 3), 255, np.uint8)
    _text(head, line, (10, 30), 0.8, colour, 2)
    _text(head, title, (10, 58), 0.55)
    return _write(out, np.vstack([head, body]))


# a spot of film inside the border, left of the glyph (label units: 0-1 across, 0-1 down)
_SPOT = np.array([[0.08, 0.4], [0.28, 0.4], [0.28, 0.6], [0.08, 0.6]], np.float32)


def _zoom(photo: np.ndarray, corners, size: int = 300) -> tuple[np.ndarray, np.ndarray, float]:
    """The same spot of film in any photo of a label (found from its true corners):
    magnified and contrast-stretched; with the spot's outline in the photo and the
    magnification."""
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    to_photo = cv2.getPerspectiveTransform(square, np.asarray(corners, np.float32))
    spot = cv2.perspectiveTransform(_SPOT[None], to_photo)[0]
    dst = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float32)
    zoom = cv2.warpPerspective(photo, cv2.getPerspectiveTransform(spot, dst), (size, size), flags=cv2.INTER_NEAREST)
    zoom = cv2.normalize(zoom, None, 0, 255, cv2.NORM_MINMAX)  # type: ignore[call-overload]  # stubs: dst is optional
    return zoom, spot, size / float(np.linalg.norm(spot[1] - spot[0]))


def clone_picture(original: Query, clone: Query, out: Path) -> Path:
    """A clone beside a handheld photo of the label it copies, and the same spot of the
    label magnified in both: the film's grain in one, the printer's halftone in the other."""
    printer = PrintModel()
    notes = (["The film: grains of about 3 um, a texture", "no one can make twice. This is what the",
              "fingerprint reads."],
             ["The print: ink dots on the printer's screen",
              f"({printer.dot_um:g} um dots, {printer.screen_dots}x{printer.screen_dots} cells). The grain is gone;",
              "the border and glyph survive, so the clone", "is found, fingerprinted and refused."])
    panels = []
    for query, title, note in ((original, f"the label {original.label_id}, handheld photo", notes[0]),
                               (clone, "a clone: that label's photo printed in ink on paper, re-photographed",
                                notes[1])):
        photo = read_bgr(query.photo)
        zoom, spot, magnification = _zoom(photo, query.corners_px)
        line, colour = _verdict_line(query.verdict)
        if query.verdict["corners_px"]:
            _outline(photo, query.verdict["corners_px"], colour)
        cv2.polylines(photo, [np.round(spot).astype(np.int32)], True, (255, 255, 255), 2, cv2.LINE_AA)
        head = np.full((66, photo.shape[1], 3), 255, np.uint8)
        _text(head, title, (8, 24), 0.55)
        _text(head, line, (8, 54), 0.6, colour, 2)
        below = np.full((zoom.shape[0] + 36, photo.shape[1], 3), 255, np.uint8)
        below[30:30 + zoom.shape[0], 8:8 + zoom.shape[1]] = zoom
        _text(below, f"the white square, {magnification:.0f}x, contrast stretched", (8, 22), 0.5)
        for i, text in enumerate(note):
            _text(below, text, (zoom.shape[1] + 24, 60 + 26 * i), 0.55)
        panels.append(np.vstack([head, photo, below]))
    gap = np.full((panels[0].shape[0], 16, 3), 255, np.uint8)
    return _write(out, np.hstack([panels[0], gap, panels[1]]))


def scores_picture(queries: list[Query], threshold: float, out: Path) -> Path:
    """Histograms of the best-match score per kind, with the threshold."""
    scores = {KIND_TEXT[k]: [q.verdict["score"] for q in queries if q.kind == k and q.verdict["score"] is not None]
              for k in KINDS}
    return histograms_png(scores, out, "Best-match score of each handheld photo, by what it shows "
                          "(unreadable photos have none)", unit="", bins=50, log_count=True,
                          marks={"threshold": threshold}, size=(1000, 680),
                          xlabel="cosine similarity to the nearest enrolled label of the pattern read",
                          colours={KIND_TEXT[k]: c for k, c in _KIND_COLOUR.items()})


def draw_pictures(folder: Path, batch_dir: Path, registry_path: Path, queries: list[Query], threshold: float,
                  names: dict[str, str]) -> dict[str, str]:
    """Every picture the demo can draw from what it made; {name: path}."""
    drawn = {}
    with Registry(registry_path) as registry:
        batch_id = batch_dir.name
        labels = registry.labels(batch_id)
        lost: dict[int, list[str]] = {}
        for label in labels:
            if label.status in ("rejected", "missing"):
                lost.setdefault(label.field, []).append(label.label_id)
        field = max(lost, key=lambda f: (len(lost[f]), -f)) if lost else 0
        overlay = batch_dir / "overlays" / f"field_{field:04d}.jpg"
        if overlay.exists():
            found = sum(label.field == field and label.status not in ("rejected", "missing") for label in labels)
            drawn["field"] = field_picture(overlay, field, found, lost.get(field, []), folder / names["field"])
        crops = {label.label_id: batch_dir / label.crop_path for label in labels if label.crop_path}
    genuine = [q for q in queries if q.kind == "genuine"]
    pick = next((q for q in genuine if q.correct), genuine[0] if genuine else None)
    if pick is not None:
        drawn["genuine"] = verdict_picture(pick, crops.get(pick.label_id), "a new handheld photo of an enrolled "
                                           "label (any rotation, tilt, blur, JPEG)", folder / names["genuine"])
    lookalikes = [q for q in queries if q.kind == "other_film"]
    pick = next((q for q in lookalikes if q.correct), lookalikes[0] if lookalikes else None)
    if pick is not None:
        drawn["counterfeit"] = verdict_picture(
            pick, crops.get(pick.label_id), f"the batch's own laser job etched into another film: {pick.label_id}'s "
            "border and glyph, another grain", folder / names["counterfeit"])
    clones = [q for q in queries if q.kind == "clone"]
    originals = {q.label_id: q for q in genuine}
    pair = next(((originals[c.label_id], c) for c in clones if c.label_id in originals), None)
    if pair is not None:
        drawn["clone"] = clone_picture(*pair, folder / names["clone"])
    if queries:
        drawn["scores"] = scores_picture(queries, threshold, folder / names["scores"])
    return {name: str(path) for name, path in drawn.items()}
