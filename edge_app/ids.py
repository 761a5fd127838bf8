"""One grammar for every id: label, batch, device, product and region.

An id travels far: into file names (``crops/LABEL_ID.png``, sync files named by device), SQLite
and PostgreSQL rows, Faiss id maps, Milvus primary keys and the filter literals pymilvus pages
by (it does not escape them: a quote breaks every export, ``a\\"b`` loops it forever). So an
id is checked where it enters (a batch layout, a crop folder's labels.csv, the registry,
enrollment, the fingerprint store, a journal sync file, ``--product``/``--region``), and no
store, filter or file name ever sees a quote, a backslash, a slash, ``..``, a space or a
control character:

    every id    1-64 of A-Z a-z 0-9 _ - . , starting with a letter or digit
    batch       1-32 of A-Z a-z 0-9 _ , starting with a letter or digit (a layout's label id
                BATCH-FFFF-SS splits at its "-")
    product, region  1-40 of A-Z a-z 0-9  (they name a Milvus partition, r_PRODUCT_REGION)

    check_id("label", text)   # text, or a PufError naming it and the grammar
"""

from __future__ import annotations

import re

from edge_app.errors import PufError

BATCH = r"[A-Za-z0-9][A-Za-z0-9_]{0,31}"  # also the batch part of a layout's label ids (`edge_app.layout`)
_ID = (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"), "1-64 letters, digits, '_', '-' or '.', starting with a "
       "letter or digit")
_PARTITION_NAME = (re.compile(r"[A-Za-z0-9]{1,40}"), "1-40 letters or digits (it names a Milvus partition)")
GRAMMARS = {  # kind -> (pattern, the grammar in words)
    "label": _ID,
    "device": _ID,
    "batch": (re.compile(BATCH), "1-32 letters, digits or '_', starting with a letter or digit"),
    "product": _PARTITION_NAME,
    "region": _PARTITION_NAME,
}
SHOWN_CHARS = 40  # of an id too long to be one, the message shows this much


def check_id(kind: str, text: object) -> str:
    """`text`, when it is a `kind` id ("label", "batch", "device", "product", "region");
    otherwise a PufError naming the id and the grammar."""
    pattern, words = GRAMMARS[kind]
    if isinstance(text, str) and pattern.fullmatch(text):
        return text
    shown = repr(text) if not isinstance(text, str) or len(text) <= SHOWN_CHARS else \
        f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"
    raise PufError(f"{kind} id {shown} is not allowed: a {kind} id is {words}")
