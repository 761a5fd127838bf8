"""Drive the real app: start it, run a script of steps as an inspector would (press
buttons, wait for what they bring up), record what each screen shows, take screenshots.
The app's tests (tests/edge_app/test_app.py) and its benchmark (tools/bench_app.py) use it;
it is test tooling, not part of the installed app.

    python tools/app_driver.py SCRIPT.json

The app runs in its own process (Kivy's window is one per process), under Xvfb, or with
SDL's offscreen driver where Xvfb is not installed (`display`). The script is JSON:
``{"options": {AppOptions fields}, "steps": [...], "out": "result.json"}``; steps are

    {"do": "wait_ready"}                           bundle opened (or refused), a preview frame drawn
    {"do": "capture"}                              press CAPTURE, wait until the verdict is drawn
    {"do": "stall_worker", "seconds": 1}           keep the worker busy (a slow verification), then
                                                   press CAPTURE and record the UI while it waits
    {"do": "press", "screen": S, "id": ID}         press a button, wait for a frame
    {"do": "show", "screen": S}                    go to a screen (as its button does)
    {"do": "tap_history", "row": 0}                tap a history row with a finger (a touch event at
                                                   the row's place on the window), wait for its photo
    {"do": "close_popups"}
    {"do": "install", "folder": PATH}              Settings -> Update bundle, PATH opened in the folder
                                                   chooser, Install pressed; wait for the outcome
    {"do": "chooser", "path": PATH}                open PATH in the folder chooser that is showing
    {"do": "camera", "spec": SPEC}                 Settings -> Camera
    {"do": "label_px", "text": T}                  Settings -> Label size: T typed, Apply pressed; wait
                                                   until the verifier has it (or it is refused)
    {"do": "language", "name": NAME}               Settings -> Language: NAME (as listed, "Deutsch") chosen
    {"do": "wait", "seconds": S}
    {"do": "record", "name": N}                    what the current screen shows, as result["records"][N]
    {"do": "screenshot", "path": P}

The result JSON holds the records, the capture -> verdict times, and an "error" if a step
failed or timed out.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The checkout: the app's process imports its `edge_app` (unless another interpreter is given).
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def display(work: Path) -> Iterator[dict]:
    """The environment for a Kivy process that renders: a private Xvfb server (on a free
    display, which Xvfb picks itself), or SDL's offscreen driver where Xvfb is not
    installed. Kivy's home and logs go to `work`. The app speaks English unless a script
asks for another language (LANGUAGE=en, whatever the machine's locale)."""
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KIVY_NO_ARGS": "1", "KIVY_HOME": str(work / "kivy"), "KIVY_LOG_MODE": "PYTHON",
           "KIVY_NO_FILELOG": "1", "LANGUAGE": "en",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("SDL_VIDEODRIVER", None)
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        yield {**env, "SDL_VIDEODRIVER": "offscreen"}
        return
    read, write = os.pipe()
    server = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb did not start (exit status {server.poll()})")
        yield {**env, "DISPLAY": f":{number}"}
    finally:
        server.terminate()
        server.wait(10)


def run_script(script: dict, work: Path, env: dict, timeout: float = 240, python: Path | None = None) -> dict:
    """Run the app on `script` in a child process; its result (RuntimeError if the app
    died, with the end of its stderr). `python`: another interpreter whose installed `edge_app`
    runs it (a wheel's venv), from `work`, with nothing of this checkout on its path."""
    work.mkdir(parents=True, exist_ok=True)
    path, out = work / "script.json", work / "result.json"
    path.write_text(json.dumps({**script, "out": str(out)}, default=str))
    out.unlink(missing_ok=True)
    if python is not None:
        env = {key: value for key, value in env.items() if key != "PYTHONPATH"}
    # run by its path, this file's folder (tools/) heads the child's sys.path, not the checkout
    done = subprocess.run([str(python or sys.executable), str(Path(__file__).resolve()), str(path)],
                          cwd=work if python is not None else ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"the app exited with status {done.returncode}:\n{done.stderr[-4000:]}")
    result = json.loads(out.read_text())
    result["stderr"] = done.stderr[-4000:]
    result["log"] = done.stderr  # the whole of what the app logged (warnings and errors)
    return result


# ---- inside the app's process -----------------------------------------------------------------

def main(script_path: str) -> int:
    script = json.loads(Path(script_path).read_text())
    from edge_app.app.launch import AppOptions, configure_kivy
    from edge_app.device_store import DeviceStore

    given = dict(script["options"])
    for key in ("home", "bundle", "trusted_keys"):
        if given.get(key):
            given[key] = Path(given[key])
    if "size" in given:
        given["size"] = tuple(given["size"])
    options = AppOptions(**given)
    configure_kivy(options)
    from kivy.clock import Clock
    from kivy.core.window import Window

    from edge_app.app.puf_app import PufApp

    app = PufApp(options, DeviceStore(options.home))
    result: dict = {"records": {}, "capture_ms": [], "error": None, "steps_done": 0}
    flips = [0]
    Window.bind(on_flip=lambda *_: flips.__setitem__(0, flips[0] + 1))
    steps = run_steps(app, script["steps"], result, flips)
    deadline = time.monotonic() + script.get("timeout_s", 180)
    waiting = [None]

    def pump(_dt: float) -> None:
        try:
            if waiting[0] is not None and not waiting[0]():
                if time.monotonic() > deadline:
                    step = script["steps"][result["steps_done"]]
                    raise TimeoutError(f"step {result['steps_done']} timed out: {step}")
                return
            waiting[0] = next(steps)
        except StopIteration:
            finish()
        except Exception as error:  # the test reads it from the result
            import traceback

            result["error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
            finish()

    def finish() -> None:
        event.cancel()
        result["capture_ms"] = app.verdict.capture_ms
        Path(script["out"]).write_text(json.dumps(result, indent=1, default=str))
        app.stop()

    event = Clock.schedule_interval(pump, 0)
    app.run()
    return 0


def after_frames(flips: list, n: int = 2):
    """A wait condition: `n` more frames drawn (Kivy draws only when something changed,
    so each check asks for one)."""
    from kivy.core.window import Window

    target = flips[0] + n

    def drawn() -> bool:
        Window.canvas.ask_update()
        return flips[0] >= target

    return drawn


def run_steps(app, steps: list[dict], result: dict, flips: list) -> Iterator[Callable[[], bool]]:
    """The script as a generator of wait conditions: each step's own (`STEPS`), in turn."""
    from edge_app.app.inspection import NOT_OPENED

    yield lambda: app.root is not None and app.bundle_status.problem != NOT_OPENED
    for step in steps:
        if step["do"] not in STEPS:
            raise ValueError(f"unknown step {step['do']!r}")
        yield from STEPS[step["do"]](Run(app, step, result, flips))
        result["steps_done"] += 1


@dataclass(frozen=True)
class Run:
    """What a step works with: the app, the step itself, the result it adds to, and the
    count of frames drawn (`after_frames`)."""

    app: Any
    step: dict
    result: dict
    flips: list


Waits = Iterator[Callable[[], bool]]


def _wait_ready(run: Run) -> Waits:
    app = run.app
    yield lambda: app.preview.ticks > 0 or app.source is None
    yield after_frames(run.flips)


def _capture(run: Run) -> Waits:
    button = _capture_button(run.app)
    done = len(run.app.verdict.capture_ms)
    button.trigger_action(0)
    yield from _verdict_drawn(run, done)


def _stall_worker(run: Run) -> Waits:
    """A slow verification: the worker kept busy, CAPTURE pressed, the UI recorded while it waits."""
    app, button = run.app, _capture_button(run.app)
    done = len(app.verdict.capture_ms)
    app.worker.submit(lambda seconds=run.step["seconds"]: time.sleep(seconds))
    ticks = app.preview.ticks
    button.trigger_action(0)
    yield after_frames(run.flips, 3)
    busy = run.result["records"]["while_busy"] = {**record(app), "capture_disabled": button.disabled,
                                                  "capture_text": button.text}
    yield lambda: app.preview.ticks >= ticks + 5  # the preview goes on meanwhile
    busy["preview_frames_while_busy"] = app.preview.ticks - ticks
    busy["still_busy"] = app.busy
    yield from _verdict_drawn(run, done)


def _capture_button(app):
    button = app.screen("preview").ids.capture
    if app.root.current != "preview" or button.disabled:
        raise AssertionError(f"CAPTURE cannot be pressed: screen {app.root.current}, notice {app.notice!r}")
    return button


def _verdict_drawn(run: Run, done: int) -> Waits:
    yield lambda: len(run.app.verdict.capture_ms) > done
    yield after_frames(run.flips)


def _press(run: Run) -> Waits:
    widget = run.app.screen(run.step["screen"]).ids[run.step["id"]]
    if widget.disabled:
        raise AssertionError(f"{run.step['id']} is disabled")
    widget.trigger_action(0)
    yield after_frames(run.flips)


def _show(run: Run) -> Waits:
    app = run.app
    loads = app.history.loads
    app.show(run.step["screen"])
    if run.step["screen"] == "history":
        yield lambda: app.history.loads > loads
    yield after_frames(run.flips, 3)


def _tap_history(run: Run) -> Waits:
    app, number = run.app, run.step["row"]
    row = app.screen("history").ids.rows.view_adapter.get_visible_view(number)
    if row is None:
        raise AssertionError(f"history row {number} is not on the screen")
    app.history.entry_view = None
    yield from tap(row, run.flips)
    until = time.monotonic() + 10
    yield lambda: app.history.entry_view is not None or time.monotonic() > until
    if app.history.entry_view is None:
        raise AssertionError(f"tapping history row {number} opened nothing")
    yield after_frames(run.flips, 3)


def _close_popups(run: Run) -> Waits:
    from kivy.core.window import Window
    from kivy.uix.modalview import ModalView

    for child in list(Window.children):
        if isinstance(child, ModalView):
            child.dismiss(animation=False)
    yield after_frames(run.flips, 3)


def _install(run: Run) -> Waits:
    """Settings -> Update bundle, the folder opened in the chooser, Install pressed."""
    run.app.show("settings")
    run.app.screen("settings").ids.update_bundle.trigger_action(0)
    yield after_frames(run.flips)
    chooser = _chooser()
    chooser.path = str(run.step["folder"])  # as if opened folder by folder
    chooser.ids.choose.trigger_action(0)
    yield lambda: not run.app.busy
    yield after_frames(run.flips, 3)


def _open_in_chooser(run: Run) -> Waits:
    _chooser().path = str(run.step["path"])
    yield after_frames(run.flips, 3)


def _chooser():
    from kivy.core.window import Window

    from edge_app.app.settings import FolderChooser

    return next(child for child in Window.children if isinstance(child, FolderChooser))


def _camera(run: Run) -> Waits:
    run.app.settings.choose_camera(run.step["spec"])
    yield after_frames(run.flips)


def _label_px(run: Run) -> Waits:
    run.app.show("settings")
    ids = run.app.screen("settings").ids
    ids.label_px.text = run.step["text"]
    ids.apply_label_px.trigger_action(0)
    yield lambda: not run.app.busy
    yield after_frames(run.flips)


def _language(run: Run) -> Waits:
    run.app.show("settings")
    run.app.screen("settings").ids.language.text = run.step["name"]  # as a choice in its list does
    yield after_frames(run.flips, 3)


def _wait(run: Run) -> Waits:
    until = time.monotonic() + run.step["seconds"]
    yield lambda: time.monotonic() >= until


def _record(run: Run) -> Waits:
    run.result["records"][run.step["name"]] = record(run.app)
    return iter(())


def _screenshot(run: Run) -> Waits:
    yield after_frames(run.flips)
    screenshot(run.step["path"])


STEPS: dict[str, Callable[[Run], Waits]] = {
    "wait_ready": _wait_ready, "capture": _capture, "stall_worker": _stall_worker, "press": _press, "show": _show,
    "tap_history": _tap_history, "close_popups": _close_popups, "install": _install, "chooser": _open_in_chooser,
    "camera": _camera, "label_px": _label_px, "language": _language, "wait": _wait, "record": _record,
    "screenshot": _screenshot,
}


def tap(widget, flips: list):
    """A finger's tap on the middle of `widget`, through the window's input path as the touch
    screen delivers one (down, a few frames, up): wait conditions."""
    from kivy.base import EventLoop
    from kivy.core.window import Window
    from kivy.input.motionevent import MotionEvent

    class Finger(MotionEvent):
        def depack(self, args: dict) -> None:
            self.sx, self.sy = args["sx"], args["sy"]
            self.profile = ["pos"]
            super().depack(args)

    x, y = widget.to_window(*widget.center)
    finger = Finger("driver", 1, {"sx": x / (Window.width - 1), "sy": y / (Window.height - 1)}, is_touch=True,
                    type_id="touch")
    EventLoop.post_dispatch_input("begin", finger)
    yield after_frames(flips, 3)
    EventLoop.post_dispatch_input("end", finger)
    yield after_frames(flips)


def record(app) -> dict:
    """What the current screen shows: every identified widget's text, and the app's state."""
    from kivy.core.window import Window
    from kivy.uix.modalview import ModalView

    screen, preview = app.root.current_screen, app.screen("preview")
    texts = {key: widget.text for key, widget in screen.ids.items() if isinstance(getattr(widget, "text", None), str)}
    popups = [child for child in Window.children if isinstance(child, ModalView)]
    out = {
        "screen": app.root.current, "texts": texts, "notice": app.notice, "ready": app.ready, "busy": app.busy,
        "bundle": app.bundle_status.describe(), "bundle_ready": app.bundle_status.ready, "camera": app.camera_text,
        "focus": preview.focus_text, "light": preview.light_text, "preview_frames": app.preview.ticks,
        "capture_disabled": app.screen("preview").ids.capture.disabled,
        "history": [{k: row[k] for k in ("entry_id", "title", "label_id", "score", "when")}
                    for row in app.screen("history").ids.rows.data],
        "settings_message": app.screen("settings").message,
        "label_px": app.label_px, "language": app.language, "hint": preview.hint,
        "guide": list(app.screen("preview").ids.live.guide),
        "popup": [getattr(p, "title", "") + " | " + getattr(p, "lines", "") for p in popups],
        "popup_crop": [p.ids.crop.texture is not None for p in popups if "crop" in p.ids],
    }
    if screen.name == "verdict" and app.verdict.outcome is not None:
        o = app.verdict.outcome
        out["outcome"] = {"kind": o.kind, "title": o.title, "label_id": o.label_id, "score": o.score,
                          "labels": o.labels, "entry_id": o.entry_id, "verify_ms": o.verify_ms,
                          "has_crop": o.crop is not None, "has_thumbnail": o.thumbnail is not None}
        out["banner"] = list(screen.banner)
    return out


def screenshot(path: str) -> None:
    """The window as drawn, to `path` (Kivy numbers its screenshot files; renamed here)."""
    from kivy.core.window import Window

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    made = Window.screenshot(name=str(target.with_name(target.stem + "_.png")))
    os.replace(made, target)  # noqa: TID251 -- Kivy wrote the file whole; this only renames it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
