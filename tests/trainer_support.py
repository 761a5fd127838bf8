"""Helpers of the trainer tests: a tiny training configuration, a crop folder cut to some
labels, and what the registry and a bundle's shards say about the labels enrolled."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from edge_app.bundle_format import read_manifest
from fabrication.registry import Registry

TINY = ["backbone=mobile_tiny", "embedding_dim=32", "head_channels=8", "pattern_mlp=32",
        "preprocess.input_size=64", "batch_size=32", "lr=0.003", "warmup_steps=5",
        "s=16", "m2=0.3", "val_frac=0.3", "eval_every=1000", "checkpoint_every=10",
        "weight_decay=0.0001"]


def subset(crops: Path, out: Path, slots: range) -> Path:
    """A crop folder of some labels of `crops`."""
    lines = (crops / "labels.csv").read_text().splitlines()
    keep = [line for line in lines[1:] if int(line.split(",")[0][-2:]) in slots]
    out.mkdir()
    (out / "labels.csv").write_text("\n".join([lines[0], *keep]) + "\n")
    for line in keep:
        shutil.copytree(crops / "crops" / line.split(",")[0], out / "crops" / line.split(",")[0])
    return out


def statuses(registry_path: Path) -> dict[str, str]:
    with Registry(registry_path) as registry:
        return {label.label_id: label.status for label in registry.labels()}


def bundle_label_counts(bundle: Path) -> Counter:
    """How many times each label id is in the bundle's shards."""
    classes = read_manifest(bundle)["shards"]["classes"].values()
    return Counter(i.decode() for entry in classes for i in np.load(bundle / entry["ids"]).tolist())
