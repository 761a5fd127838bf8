"""`puf app`: the handheld verifier's touch UI (live preview, capture, verdict, history, settings).

Options given here apply to this run; what the inspector changes on the Settings screen
(camera, exposure, label size, language) is saved in the device's settings.json and used on the next start.
Only the standard library is imported here at module level; Kivy only when the app runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.arguments import positive, positive_int
from edge_app.verbs import Verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, metavar="DIR",
                        help="verify with this bundle folder (default: the one installed in the device home)")
    parser.add_argument("--trusted-keys", type=Path, metavar="DIR",
                        help="folder of trusted *.pub keys (default: HOME/trusted_keys, else "
                             "~/.config/puf/trusted_keys)")
    parser.add_argument("--camera", metavar="SPEC", help="file:PATH (a photo or a folder of photos), opencv:N, "
                                                         "or picamera2 (default: the saved setting)")
    parser.add_argument("--home", type=Path, metavar="DIR",
                        help="the device's folder: bundle, journal, settings (default: $PUF_HOME, else "
                             "~/.local/share/puf)")
    parser.add_argument("--fullscreen", action="store_true", help="fill the screen (the Pi's kiosk)")
    parser.add_argument("--size", default="800x480", metavar="WxH",
                        help="window size (default 800x480, the Pi's touch screen)")
    parser.add_argument("--exposure-us", type=positive_int, metavar="US",
                        help="manual exposure time, microseconds (default: automatic)")
    parser.add_argument("--gain", type=positive, metavar="GAIN", help="manual analogue gain (default: automatic)")
    parser.add_argument("--language", metavar="LANG",
                        help="show the app in this language: en or de (default: the saved setting, else "
                             "$LANGUAGE / $LANG, else en)")


def parse_size(text: str) -> tuple[int, int]:
    from edge_app.errors import PufError

    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PufError(f"--size must be WIDTHxHEIGHT, like 800x480; got {text!r}") from None
    if not (200 <= width <= 8000 and 200 <= height <= 8000):
        raise PufError(f"--size {text} is not a usable window size (each side 200-8000 px)")
    return width, height


def run(args: argparse.Namespace) -> int:
    from edge_app.errors import PufError, require_module

    size = parse_size(args.size)
    if args.gain is not None and args.exposure_us is None:
        raise PufError("--gain needs --exposure-us too (give both, or neither for automatic exposure)")
    if args.language is not None:
        from edge_app.app.i18n import check_language

        check_language(args.language)
    require_module("kivy", "device")
    from edge_app.app.launch import AppOptions, run_app

    return run_app(AppOptions(home=args.home, bundle=args.bundle, trusted_keys=args.trusted_keys, camera=args.camera,
                              exposure_us=args.exposure_us, gain=args.gain, fullscreen=args.fullscreen, size=size,
                              language=args.language))


verb = Verb(
    "app",
    "Start the handheld verifier: live preview, capture, verdict, history and settings.",
    "  puf app                                    # the configured camera and device bundle\n"
    "  puf app --camera file:shots/               # check photos taken elsewhere\n"
    "  puf app --camera opencv:0                  # a USB microscope or webcam\n"
    "  puf app --camera picamera2 --fullscreen    # the Raspberry Pi camera module (kiosk)",
    add_arguments,
    run,
    extras=("device",),
    rank=31,
)
