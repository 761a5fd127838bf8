"""Factory-side learning: data sets and augmentation, training, export, enrollment into
shards, evaluation; and the trainer's `puf` verbs (`trainer/verb_*.py`)."""


def quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter off (its warnings and errors stay), before it is imported."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
