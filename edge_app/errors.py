"""The one exception type users see as a message instead of a traceback."""


class PufError(Exception):
    """A problem with the user's input or environment, explained in plain words.

    The `puf` command prints it as ``puf VERB: error: MESSAGE`` and exits with status 2;
    anything else that escapes is a bug and keeps its traceback.
    """


def require_module(module: str, extra: str) -> None:
    """Fail with an install hint when an optional dependency is missing."""
    from importlib.util import find_spec

    if find_spec(module) is None:
        raise PufError(
            f"this needs the Python module {module!r}, which is not installed; "
            f"install the '{extra}' extra: pip install 'puf-labels[{extra}]'"
        )
