"""What is installed, for `puf --version` and bug reports: the project's version and its key
libraries'. Read from the distributions' metadata, never by importing them: TensorFlow takes
seconds to import and a device never has it."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

PROJECT = "puf-labels"
# Each role, by the distributions that can fill it (the first installed one is reported).
ROLES = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
               "opencv-contrib-python"),
    "faiss": ("faiss-cpu", "faiss"),
    "tflite runtime": ("ai-edge-litert", "tflite-runtime"),
    "onnxruntime": ("onnxruntime",),
    "cryptography": ("cryptography",),
}
# Reported only where installed: the app's UI, the Pi camera, the trainer.
OPTIONAL = ("kivy", "picamera2", "tensorflow-cpu", "tensorflow")


def installed(distribution: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """{name: version} for the project, every role (`not installed` where empty) and the optional
    libraries that are installed; a role is named by the distribution that fills it."""
    report = {PROJECT: installed(PROJECT) or "not installed (run from a checkout)"}
    for role, candidates in ROLES.items():
        found = next(((name, v) for name in candidates if (v := installed(name))), None)
        report.update({found[0]: found[1]} if found else {role: "not installed"})
    report.update({name: v for name in OPTIONAL if (v := installed(name))})
    return report


def version_text() -> str:
    """The lines `puf --version` prints."""
    lines = [f"{name} {v}" for name, v in versions().items()]
    lines[0] += f" (Python {platform.python_version()}, {platform.system()} {platform.machine()})"
    return "\n".join(lines)
