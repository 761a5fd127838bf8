"""One microscope field as an OME-TIFF: the image with what is known of its capture.

The OME-XML that tifffile writes into the file's first ImageDescription carries the
physical pixel size, the stage position and the exposure in OME's own fields (and, when the
rig knows them, the acquisition date, the objective, the channel and its emission wavelength),
so Fiji (Bio-Formats), napari and OMERO show them; the TIFF resolution tags carry the pixel
size too, for readers of plain TIFF; the batch id, the field index and the stage
position's name travel as a MapAnnotation with keys ``puf.batch_id``, ``puf.field`` and
``puf.position_label``. `write_field` writes it, `read_field` reads back its position keys,
also from an OME-TIFF that another program wrote (then without the puf keys).

tifffile is the factory's dependency: a device install without it reads no OME metadata
(`read_field` answers None), and images are still segmented.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from edge_app.errors import PufError

_KEYS = ("batch_id", "field", "position_label")
CAPTURE_KEYS = ("acquired", "objective", "channel", "emission_nm")  # what `write_field` writes when known
_PREFIX = "puf."
# The largest field index a file may carry: beyond any batch, within what an index can hold.
MAX_FIELD = 2**31 - 1
# OME length units we accept, in micrometres
_UM_PER = {"µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}
_MS_PER = {"s": 1e3, "ms": 1.0, "µs": 1e-3, "us": 1e-3, "\u03bcs": 1e-3}


def resolution_tags(pixel_size_um: float) -> dict:
    """The TIFF resolution tags of an image of this pixel size (pixels per centimetre), so that
    programs reading no OME (an image viewer, GIMP, ImageJ's plain TIFF reader) see its scale."""
    import tifffile

    per_cm = 1e4 / float(pixel_size_um)
    return {"resolution": (per_cm, per_cm), "resolutionunit": tifffile.RESUNIT.CENTIMETER}


def write_field(path: Path, image: np.ndarray, meta: dict) -> None:
    """Write `image` ((H, W) mono or (H, W, 3) RGB) at `path` with `meta`: batch_id, field,
    position_label, stage_um (x, y), exposure_ms and pixel_size_um; and, when the rig knows
    them, acquired (ISO 8601), objective (its name), channel (its name) and emission_nm. The
    caller makes the write atomic (a temporary name renamed into place)."""
    import tifffile

    x_um, y_um = meta["stage_um"]
    colour = image.ndim == 3
    channel = {"Name": meta.get("channel"), "EmissionWavelength": meta.get("emission_nm"),
               "EmissionWavelengthUnit": "nm" if meta.get("emission_nm") else None}
    metadata = {
        "axes": "YXS" if colour else "YX",
        "Name": str(meta["position_label"]),
        **({"AcquisitionDate": str(meta["acquired"])} if meta.get("acquired") else {}),
        "Channel": {key: value for key, value in channel.items() if value},
        "Description": f"field {meta['field']} of batch {meta['batch_id']}",
        "PhysicalSizeX": float(meta["pixel_size_um"]), "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": float(meta["pixel_size_um"]), "PhysicalSizeYUnit": "µm",
        "Plane": {"PositionX": [float(x_um)], "PositionXUnit": ["µm"],
                  "PositionY": [float(y_um)], "PositionYUnit": ["µm"],
                  "ExposureTime": [float(meta["exposure_ms"])], "ExposureTimeUnit": ["ms"]},
        "MapAnnotation": {_PREFIX + key: str(meta[key]) for key in _KEYS},
    }
    tifffile.imwrite(path, image, photometric="rgb" if colour else "minisblack", ome=True,
                     metadata=metadata, **resolution_tags(meta["pixel_size_um"]))
    if meta.get("objective"):
        _add_objective(path, str(meta["objective"]))


def _add_objective(path: Path, objective: str) -> None:
    """Name the objective in the file's OME-XML (tifffile writes no Instrument): an Instrument
    with the Objective, which the Image refers to through its ObjectiveSettings."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        root = ElementTree.fromstring(str(tif.ome_metadata))  # the file just written: OME
    ns = root.tag.rsplit("}", 1)[0].lstrip("{")
    ElementTree.register_namespace("", ns)
    instrument = ElementTree.Element(f"{{{ns}}}Instrument", ID="Instrument:0")
    ElementTree.SubElement(instrument, f"{{{ns}}}Objective", ID="Objective:0:0", Model=objective)
    images = [child for child in root if child.tag == f"{{{ns}}}Image"]
    root.insert(list(root).index(images[0]), instrument)  # the schema's order: Instrument before Image
    for image in images:
        pixels = next(k for k, child in enumerate(image) if child.tag == f"{{{ns}}}Pixels")
        image.insert(pixels, ElementTree.Element(f"{{{ns}}}ObjectiveSettings", ID="Objective:0:0"))
        image.insert(pixels, ElementTree.Element(f"{{{ns}}}InstrumentRef", ID="Instrument:0"))
    tifffile.tiffcomment(path, ElementTree.tostring(root, encoding="unicode").encode())


def read_field(path: Path) -> dict | None:
    """The capture metadata of an OME-TIFF, in `write_field`'s keys (those the file has);
    None for an image that is not an OME-TIFF, cannot be opened as a TIFF (its reader says
    why when the image is read), or where tifffile is not installed. A TIFF whose OME-XML
    cannot be understood is a PufError naming it."""
    if path.suffix.lower() not in (".tif", ".tiff") or find_spec("tifffile") is None:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata if tif.is_ome else None
        return None if xml is None else _meta_of(ElementTree.fromstring(xml))
    except (OSError, tifffile.TiffFileError):
        return None
    except (ElementTree.ParseError, KeyError, ValueError) as error:
        raise PufError(f"{path}: its OME metadata cannot be read ({type(error).__name__}: "
                       f"{error})") from None


def _first(root: ElementTree.Element, name: str) -> ElementTree.Element | None:
    """The first element named `name` in any OME schema version's namespace."""
    return next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == name), None)


def _um(owner: ElementTree.Element, name: str) -> float | None:
    """A length attribute of an OME element in micrometres (OME's default unit is µm)."""
    value = owner.get(name)
    if value is None:
        return None
    unit = owner.get(name + "Unit", "µm")
    if unit not in _UM_PER:
        raise ValueError(f"{name} is in {unit!r}, not a length unit we know")
    return float(value) * _UM_PER[unit]


def _meta_of(root: ElementTree.Element) -> dict:
    pixels = _first(root, "Pixels")
    if pixels is None:
        raise ValueError("no Pixels element")
    meta: dict = {}
    size = _um(pixels, "PhysicalSizeX")
    if size is not None:
        if not size > 0:
            raise ValueError(f"PhysicalSizeX is {size}")
        meta["pixel_size_um"] = size
    plane = _first(pixels, "Plane")
    if plane is not None:
        x, y = _um(plane, "PositionX"), _um(plane, "PositionY")
        if x is not None and y is not None:
            meta["stage_um"] = [x, y]
        exposure = plane.get("ExposureTime")
        if exposure is not None:
            unit = plane.get("ExposureTimeUnit", "s")
            if unit not in _MS_PER:
                raise ValueError(f"ExposureTime is in {unit!r}, not a time unit we know")
            meta["exposure_ms"] = float(exposure) * _MS_PER[unit]
    for element in root.iter():
        key = element.get("K", "") if element.tag.rsplit("}", 1)[-1] == "M" else ""
        if key.startswith(_PREFIX) and key.removeprefix(_PREFIX) in _KEYS:
            meta[key.removeprefix(_PREFIX)] = element.text or ""
    if "field" in meta:
        if not (meta["field"].isdecimal() and int(meta["field"]) <= MAX_FIELD):
            raise ValueError(f"puf.field is {meta['field']!r}, not a field index (a whole number 0 to {MAX_FIELD})")
        meta["field"] = int(meta["field"])
    return meta
