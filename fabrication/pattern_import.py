"""A factory's own glyphs as a pattern set: from SVG, DXF, a stroke font, or a saved set.

    builtin                     the built-in 44 classes (`fabrication.patterns`)
    glyphs.json                 a saved pattern set (`edge_app.pattern_set`, patterns.json)
    glyphs.svg                  one glyph per element with an id: a <g id="..."> (all its
                                paths) or a <path>/<polyline>/<polygon>/<line> with an id
    glyphs/                     a folder of SVG files, one glyph each, named by the file
    glyphs.dxf                  one glyph per layer of the modelspace (lines, polylines,
                                arcs, circles, splines; flattened to 0.2% of the glyph)
    font:futural:ABCDEFGJKL     characters of a Hershey stroke font (single-line, made for
                                plotters: one stroke is one laser pass)

Every glyph is scaled into the unit box; its name is the element id, file stem, layer or
character (characters that cannot be names become u0041-style names). Curves are cut into
short straight strokes, the way a laser job draws them. `check_distinct` refuses a set
the device could not read: two glyphs alike, or a glyph that looks the same turned.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from edge_app.errors import PufError
from edge_app.pattern_set import PATTERN_SET_FILE, PatternSet
from fabrication.patterns import BUILTIN_SET_NAME, builtin_pattern_set

Points = list[tuple[float, float]]
_FLATNESS = 0.002  # curve flattening tolerance, as a fraction of the glyph's size
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.+-]")
# templates correlate above these (-1..1) when two glyphs would be confused, or a glyph's
# orientation would be unsure (the built-in set's worst: 0.91 and 0.74)
MAX_LIKENESS = 0.95
MAX_SELF_LIKENESS = 0.85


def load_pattern_set(source: str) -> PatternSet:
    """The pattern set named by `source` (see the module's table)."""
    if source in ("builtin", BUILTIN_SET_NAME):
        return builtin_pattern_set()
    if source.startswith("font:"):
        return _from_font(source)
    path = Path(source)
    if path.is_dir():
        if (path / PATTERN_SET_FILE).exists():
            return PatternSet.load(path / PATTERN_SET_FILE)
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".svg")
        if not files:
            raise PufError(f"no SVG files in {path} (one glyph per file, named by the file)")
        glyphs = {}
        for file in files:
            strokes = [s for group in _svg_glyphs(file, whole=True).values() for s in group]
            glyphs[_glyph_name(file.stem)] = strokes
        return _named_set(path.name, glyphs, path)
    if not path.exists():
        raise PufError(f"no pattern set at {source!r}: give builtin, a .json, .svg or .dxf file, a folder of "
                       "SVG files, or font:FONT:CHARACTERS")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return PatternSet.load(path)
    if suffix == ".svg":
        return _named_set(path.stem, _svg_glyphs(path, whole=False), path)
    if suffix == ".dxf":
        return _named_set(path.stem, _dxf_glyphs(path), path)
    raise PufError(f"{path}: a pattern set is read from .json, .svg or .dxf (or a folder of .svg files)")


def check_distinct(pattern_set: PatternSet, glyph_frac: float, line_frac: float) -> dict:
    """Refuse a set whose glyphs the device could not tell apart, or whose orientation it
    could not read (a glyph alike to itself turned by 90, 180 or 270 degrees: an O, an X, a
    square), naming every such glyph and pair at once. Returns the worst likeness found, and
    whose, for the summary."""
    templates = pattern_set.templates(glyph_frac, line_frac)
    n, names = len(templates.names), templates.names
    turned = templates._turned.reshape(4, n, -1)  # quarter turns x classes x pixels
    likeness = np.einsum("ip,qjp->qij", templates.vectors, turned)  # glyph i vs glyph j turned q
    self_turns = likeness[1:, np.arange(n), np.arange(n)]  # (3, n): each glyph against its own turns
    problems = [f"glyph {names[i]!r} looks the same turned {90 * (q + 1)} degrees (likeness {self_turns[q, i]:.2f})"
                for i in range(n) for q in range(3) if self_turns[q, i] > MAX_SELF_LIKENESS]
    if problems:
        problems[-1] += ": the device could not tell which way up a label is; use glyphs without rotational symmetry"
    pairs = likeness - np.eye(n)[None] * 10  # a glyph against itself unturned is no pair
    alike = []
    for i in range(n):
        for j in range(i + 1, n):  # glyph j turned q against i, or i turned q against j
            q, k = divmod(int(np.argmax(np.concatenate([pairs[:, i, j], pairs[:, j, i]]))), 4)
            value = float(pairs[k, i, j] if q == 0 else pairs[k, j, i])
            if value > MAX_LIKENESS:
                first, second = (names[i], names[j]) if q == 0 else (names[j], names[i])
                alike.append(f"glyphs {first!r} and {second!r}{f' turned {90 * k} degrees' if k else ''} look alike "
                             f"(likeness {value:.2f})")
    if alike:
        alike[-1] += ": the device could not tell them apart"
    if problems or alike:
        raise PufError("; ".join(problems + alike))
    worst_self = int(np.argmax(self_turns.max(axis=0)))
    worst_pair = float(pairs.max()) if n > 1 else -1.0
    return {"glyphs": n, "worst_self_likeness": round(float(self_turns[:, worst_self].max()), 3),
            "worst_self_glyph": names[worst_self], "worst_pair_likeness": round(worst_pair, 3)}


# ---- sources ------------------------------------------------------------------------------

def _named_set(name: str, glyphs: dict[str, list[Points]], source: Path | str) -> PatternSet:
    if not glyphs:
        raise PufError(f"{source}: found no glyphs")
    empty = [g for g, strokes in glyphs.items() if not strokes]
    if empty:
        raise PufError(f"{source}: {'glyphs' if len(empty) > 1 else 'glyph'} {', '.join(map(repr, empty))} "
                       f"{'have' if len(empty) > 1 else 'has'} no strokes")
    return PatternSet.from_glyphs(_glyph_name(name), glyphs)


def _glyph_name(text: str) -> str:
    if len(text) == 1 and _NAME_CHARS.match(text):
        return f"u{ord(text):04x}"
    return _NAME_CHARS.sub("_", text)[:40] or "glyph"


def _from_font(source: str) -> PatternSet:
    parts = source.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise PufError(f"{source!r}: write a font source as font:FONT:CHARACTERS, e.g. font:futural:ABCDEFGJKL")
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    try:
        font.load_default_font(parts[1])
    except Exception:  # noqa: BLE001 - the package raises bare exceptions for an unknown font
        raise PufError(f"no Hershey font {parts[1]!r}; known: {', '.join(sorted(font.default_font_names))}") from None
    glyphs = {}
    for char in dict.fromkeys(parts[2]):
        strokes = [list(stroke) for stroke in font.strokes_for_text(char)]
        if not strokes:
            raise PufError(f"the font {parts[1]!r} has no strokes for {char!r}")
        glyphs[_glyph_name(char)] = strokes
    return _named_set(f"{parts[1]}-{len(glyphs)}", glyphs, source)


def _dxf_glyphs(path: Path) -> dict[str, list[Points]]:
    import ezdxf
    from ezdxf import path as dxf_path

    try:
        doc = ezdxf.readfile(path)
    except (OSError, ezdxf.DXFError) as error:
        raise PufError(f"cannot read the DXF file {path}: {error}") from None
    glyphs: dict[str, list[Points]] = {}
    entities = list(doc.modelspace())
    extent = _dxf_extent(entities, dxf_path)
    for entity in entities:
        try:
            outline = dxf_path.make_path(entity)
        except (TypeError, ValueError):
            continue  # text, hatches, points: not strokes
        for sub in outline.sub_paths():
            points = [(float(v.x), -float(v.y)) for v in sub.flattening(_FLATNESS * extent)]  # DXF y is up
            if len(points) >= 2:
                glyphs.setdefault(entity.dxf.layer, []).append(points)
    return {_glyph_name(layer): strokes for layer, strokes in glyphs.items()}


def _dxf_extent(entities, dxf_path) -> float:
    """The drawing's size, to flatten curves to a fraction of it."""
    sizes = []
    for entity in entities:
        try:
            box = dxf_path.bbox([dxf_path.make_path(entity)])
        except (TypeError, ValueError):
            continue
        if box.has_data:
            sizes.append(max(box.size.x, box.size.y))
    return max(sizes, default=1.0) or 1.0


# ---- SVG -------------------------------------------------------------------------------------

_SVG = "{http://www.w3.org/2000/svg}"
_SHAPES = ("path", "polyline", "polygon", "line", "rect", "circle", "ellipse")


def _svg_glyphs(path: Path, whole: bool) -> dict[str, list[Points]]:
    """Glyphs of an SVG file: by element id, or the whole drawing as one (`whole`)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise PufError(f"cannot read the SVG file {path}: {error}") from None
    glyphs: dict[str, list[Points]] = {}

    def walk(element, matrix: np.ndarray, glyph: str | None) -> None:
        matrix = matrix @ _transform(element.get("transform", ""), path)
        tag = element.tag.removeprefix(_SVG)
        ident = element.get("id")
        if glyph is None and ident and (tag == "g" or tag in _SHAPES) and not whole:
            glyph = _glyph_name(ident)
        if tag in _SHAPES and (glyph is not None or whole):
            for stroke in _shape_strokes(tag, element, path):
                points = np.c_[np.asarray(stroke, float), np.ones(len(stroke))] @ matrix.T
                glyphs.setdefault(glyph or "whole", []).append([(float(x), float(y)) for x, y, _ in points])
        for child in element:
            if child.tag.removeprefix(_SVG) not in ("defs", "title", "desc", "metadata"):
                walk(child, matrix, glyph)

    walk(root, np.eye(3), None)
    if not glyphs and not whole:
        raise PufError(f"{path}: no element with an id holds strokes: give each glyph's <g> or <path> an id "
                       "(its class name)")
    return glyphs


def _transform(text: str, source: Path) -> np.ndarray:
    matrix = np.eye(3)
    for name, args in re.findall(r"(\w+)\s*\(([^)]*)\)", text):
        v = [float(a) for a in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", args)]
        if name == "matrix" and len(v) == 6:
            step = np.array([[v[0], v[2], v[4]], [v[1], v[3], v[5]], [0, 0, 1]])
        elif name == "translate" and v:
            step = np.array([[1, 0, v[0]], [0, 1, v[1] if len(v) > 1 else 0], [0, 0, 1]])
        elif name == "scale" and v:
            step = np.diag([v[0], v[1] if len(v) > 1 else v[0], 1.0])
        elif name == "rotate" and v:
            a = math.radians(v[0])
            cx, cy = (v[1], v[2]) if len(v) == 3 else (0.0, 0.0)
            turn = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
            shift = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
            step = shift @ turn @ np.linalg.inv(shift)
        else:
            raise PufError(f"{source}: cannot read the transform {name}({args})")
        matrix = matrix @ step
    return matrix


def _numbers(element, names: tuple[str, ...], source: Path) -> list[float]:
    try:
        return [float(element.get(n, "0")) for n in names]
    except ValueError:
        raise PufError(f"{source}: a <{element.tag.removeprefix(_SVG)}> has a non-numeric {names}") from None


def _shape_strokes(tag: str, element, source: Path) -> list[Points]:
    if tag == "path":
        return _path_strokes(element.get("d", ""), source)
    if tag in ("polyline", "polygon"):
        v = [float(a) for a in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", element.get("points", ""))]
        points = list(zip(v[0::2], v[1::2], strict=False))
        return [points + points[:1] if tag == "polygon" else points] if len(points) >= 2 else []
    if tag == "line":
        x1, y1, x2, y2 = _numbers(element, ("x1", "y1", "x2", "y2"), source)
        return [[(x1, y1), (x2, y2)]]
    if tag == "rect":
        x, y, w, h = _numbers(element, ("x", "y", "width", "height"), source)
        return [[(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)]]
    cx, cy, r, rx, ry = _numbers(element, ("cx", "cy", "r", "rx", "ry"), source)
    rx, ry = (r, r) if tag == "circle" else (rx, ry)
    t = np.linspace(0, 2 * math.pi, 73)
    return [list(zip((cx + rx * np.cos(t)).tolist(), (cy + ry * np.sin(t)).tolist(), strict=True))]


_TOKEN = re.compile(r"[MmLlHhVvCcSsQqTtAaZz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}


def _path_strokes(d: str, source: Path) -> list[Points]:  # noqa: C901 -- one branch per SVG path command
    """An SVG path's subpaths as polylines (curves and arcs flattened)."""
    tokens = _TOKEN.findall(d)
    if re.sub(r"[\s,]", "", d) != "".join(tokens):
        raise PufError(f"{source}: cannot read the path data {d[:60]!r}")
    strokes: list[Points] = []
    current: Points = []
    x = y = 0.0
    start = (0.0, 0.0)
    last_ctrl: tuple[float, float] | None = None
    command = ""
    i = 0
    while i < len(tokens):
        if tokens[i].isalpha():
            command = tokens[i]
            i += 1
            if command in "Zz":
                if current:
                    current.append(start)
                    strokes.append(current)
                current, (x, y), last_ctrl = [], start, None
                continue
        elif not command or command in "Zz":
            raise PufError(f"{source}: path data {d[:60]!r} has numbers without a command")
        arity = _ARITY[command.upper()]
        if i + arity > len(tokens) or any(t.isalpha() for t in tokens[i:i + arity]):
            raise PufError(f"{source}: path command {command} needs {arity} numbers in {d[:60]!r}")
        v = [float(t) for t in tokens[i:i + arity]]
        i += arity
        rel = command.islower()
        upper = command.upper()
        ox, oy = (x, y) if rel else (0.0, 0.0)
        if upper == "M":
            if len(current) >= 2:
                strokes.append(current)
            x, y = ox + v[0], oy + v[1]
            current, start = [(x, y)], (x, y)
            command = "l" if rel else "L"  # further pairs are line-tos
            last_ctrl = None
            continue
        if not current:
            current = [(x, y)]
        if upper in "LHV":
            if upper == "H":
                x = ox + v[0] if rel else v[0]
            elif upper == "V":
                y = oy + v[0] if rel else v[0]
            else:
                x, y = ox + v[0], oy + v[1]
            current.append((x, y))
            last_ctrl = None
            continue
        if upper in "CS":
            if upper == "C":
                c1, c2, end = (ox + v[0], oy + v[1]), (ox + v[2], oy + v[3]), (ox + v[4], oy + v[5])
            else:
                c1 = (2 * x - last_ctrl[0], 2 * y - last_ctrl[1]) if last_ctrl else (x, y)
                c2, end = (ox + v[0], oy + v[1]), (ox + v[2], oy + v[3])
            current += _bezier([(x, y), c1, c2, end])
            last_ctrl, (x, y) = c2, end
        elif upper in "QT":
            if upper == "Q":
                c1, end = (ox + v[0], oy + v[1]), (ox + v[2], oy + v[3])
            else:
                c1 = (2 * x - last_ctrl[0], 2 * y - last_ctrl[1]) if last_ctrl else (x, y)
                end = (ox + v[0], oy + v[1])
            current += _bezier([(x, y), c1, end])
            last_ctrl, (x, y) = c1, end
        else:  # arc
            end = (ox + v[5], oy + v[6])
            current += _arc((x, y), v[0], v[1], v[2], bool(v[3]), bool(v[4]), end)
            last_ctrl, (x, y) = None, end
    if len(current) >= 2:
        strokes.append(current)
    return strokes


def _bezier(control: Points, steps: int = 16) -> Points:
    t = np.linspace(0, 1, steps + 1)[1:, None]
    p = np.asarray(control, float)
    n = len(p) - 1
    curve = sum(math.comb(n, k) * (1 - t) ** (n - k) * t**k * p[k] for k in range(n + 1))
    return [(float(a), float(b)) for a, b in curve]


def _arc(p0: tuple[float, float], rx: float, ry: float, phi_deg: float, large: bool, sweep: bool,
         p1: tuple[float, float]) -> Points:
    """An SVG elliptical arc as points (the endpoint-to-centre conversion of the SVG spec)."""
    if p0 == p1:
        return []
    rx, ry = abs(rx), abs(ry)
    if rx == 0 or ry == 0:
        return [p1]
    phi = math.radians(phi_deg)
    cos, sin = math.cos(phi), math.sin(phi)
    dx, dy = (p0[0] - p1[0]) / 2, (p0[1] - p1[1]) / 2
    x1, y1 = cos * dx + sin * dy, -sin * dx + cos * dy
    grow = x1**2 / rx**2 + y1**2 / ry**2
    if grow > 1:
        rx, ry = rx * math.sqrt(grow), ry * math.sqrt(grow)
    num = rx**2 * ry**2 - rx**2 * y1**2 - ry**2 * x1**2
    factor = math.sqrt(max(num, 0.0) / (rx**2 * y1**2 + ry**2 * x1**2)) * (-1 if large == sweep else 1)
    cx1, cy1 = factor * rx * y1 / ry, -factor * ry * x1 / rx
    cx = cos * cx1 - sin * cy1 + (p0[0] + p1[0]) / 2
    cy = sin * cx1 + cos * cy1 + (p0[1] + p1[1]) / 2
    a0 = math.atan2((y1 - cy1) / ry, (x1 - cx1) / rx)
    a1 = math.atan2((-y1 - cy1) / ry, (-x1 - cx1) / rx)
    delta = a1 - a0
    if sweep and delta < 0:
        delta += 2 * math.pi
    elif not sweep and delta > 0:
        delta -= 2 * math.pi
    t = a0 + delta * np.linspace(0, 1, max(4, int(abs(delta) / (2 * math.pi) * 48)) + 1)[1:]
    xs = cx + rx * np.cos(t) * cos - ry * np.sin(t) * sin
    ys = cy + rx * np.cos(t) * sin + ry * np.sin(t) * cos
    return list(zip(xs.tolist(), ys.tolist(), strict=True))
