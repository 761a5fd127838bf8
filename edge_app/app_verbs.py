"""The handheld device's verbs: `app` (the Kivy UI) and `journal` (its record of checks).

Entry points in ``puf.verbs``; each verb's work is imported only when it is built or run.
"""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

app = Verb(
    "app",
    "Start the handheld verifier: live preview, capture, verdict, history and settings.",
    "  puf app                                    # the configured camera and device bundle\n"
    "  puf app --camera file:shots/               # check photos taken elsewhere\n"
    "  puf app --camera opencv:0                  # a USB microscope or webcam\n"
    "  puf app --camera picamera2 --fullscreen    # the Raspberry Pi camera module (kiosk)",
    *from_module("edge_app.app.cli"),
    needs=("kivy", "faiss", "cryptography"),
    extra="device",
)

journal = Verb(
    "journal",
    "Show or export the device's journal of verifications (CSV for sync).",
    "  puf journal list                           # the latest checks, newest first\n"
    "  puf journal export checks.csv              # every check, for sync\n"
    "  puf journal export - --since 2026-11-01    # to stdout, from a date on",
    *from_module("edge_app.journal_cli"),
)
