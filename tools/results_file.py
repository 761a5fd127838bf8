"""What every tools/results/*.json file records about its run (when, on what, the command, the load), and its
write: one owner, so the docs generator (tools/docs_pages.py) finds the same keys in each."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def started(tool: str) -> dict:
    """The head of a results file for `tools/TOOL` run with this process's arguments."""
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "command": " ".join([f"tools/{tool}", *sys.argv[1:]]), "load_before": os.getloadavg()[0]}


def save(result: dict, out: Path) -> None:
    """Write the results file (the load at the end added) and print it."""
    result["load_after"] = os.getloadavg()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
