"""Factory-side learning: data sets and augmentation, training, export, enrollment into
shards, evaluation; and the trainer's `puf` verbs (`trainer/verb_*.py`)."""

import os
import sys
import tempfile

# what TensorFlow's two libraries each print while it is imported, before its log level applies
_START_UP_CHATTER = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on")


def quiet_tensorflow() -> None:
    """Import TensorFlow without its start-up chatter, keeping its warnings and errors.

    TF_CPP_MIN_LOG_LEVEL=2 quiets its C++ log once that is set up, but two lines are printed
    before, once by each of its two native libraries, which no setting reaches (the oneDNN
    notice, the absl pre-init one); so the import runs with the stderr file descriptor held,
    and everything else written there is passed on."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not any(chatter in line for chatter in _START_UP_CHATTER):
                    sys.stderr.write(line)
