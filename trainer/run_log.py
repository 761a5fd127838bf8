"""A training run's log: ``log.csv`` (a row every 20 steps and one per validation), the same
figures as TensorBoard scalars in ``tb/``, and the progress bar. Appended to when a run
resumes, so one file tells the whole run."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from tqdm import tqdm

COLUMNS = ["step", "kind", "loss", "id_loss", "pattern_loss", "pattern_acc", "lr",
           "val_tar", "val_far", "val_eer", "val_pattern_acc", "seconds"]
VALUES = ("loss", "id_loss", "pattern_loss", "pattern_acc")  # what a training step returns, in order
ROW_EVERY = 20  # steps


class RunLog:
    """Open with `with`: the CSV file and the bar are closed however the run ends."""

    def __init__(self, out_dir: Path, steps: int, start: int, progress: bool) -> None:
        self.out_dir, self.steps, self.start, self.progress = Path(out_dir), steps, start, progress
        self.running: list[float] | None = None  # the bar's smoothed values

    def __enter__(self) -> RunLog:
        import tensorflow as tf

        path = self.out_dir / "log.csv"
        new = not path.exists()
        self.file = path.open("a", newline="")
        self.csv = csv.writer(self.file)
        if new:
            self.csv.writerow(COLUMNS)
        self.writer = tf.summary.create_file_writer(str(self.out_dir / "tb"))
        self.bar = tqdm(total=self.steps, initial=self.start, desc="training", unit="step",
                        disable=not self.progress, dynamic_ncols=True)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        self.file.close()

    def step(self, done: int, values: list[float], lr: float, seconds: float, row: bool) -> None:
        """One step on the bar; with `row`, its values in the CSV and TensorBoard too."""
        self.running = values if self.running is None else [
            0.98 * r + 0.02 * v for r, v in zip(self.running, values, strict=True)]
        self.bar.update()
        self.bar.set_postfix(loss=f"{self.running[0]:.3f}", pat=f"{self.running[3]:.2f}")
        if row:
            self.csv.writerow([done, "train", *[f"{v:.5f}" for v in values], f"{lr:.6f}",
                               "", "", "", "", f"{seconds:.1f}"])
            with self.writer.as_default(step=done):
                for name, v in zip(VALUES, values, strict=True):
                    scalar(f"train/{name}", v, done)
            self.file.flush()

    def validation(self, step: int, report: dict, far: float, seconds: float, note: str) -> None:
        """A validation report: its row, its scalars and its line on stderr (stdout is the
        verb's report, --json)."""
        row = report["tar_at_far"][0]
        self.csv.writerow([step, "val", "", "", "", "", "", f"{row['tar']:.5f}", far,
                           f"{report['eer']:.5f}", f"{report['pattern_accuracy']:.5f}", f"{seconds:.1f}"])
        with self.writer.as_default(step=step):
            scalar("val/tar", row["tar"], step)
            scalar("val/eer", report["eer"], step)
            scalar("val/pattern_acc", report["pattern_accuracy"], step)
        self.bar.write(f"step {step}: val TAR@FAR={far:g} {row['tar']:.4f}  EER {report['eer']:.4f}  "
                       f"pattern {report['pattern_accuracy']:.4f}{note}", file=sys.stderr)
        self.file.flush()


def scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar, written without the tensorboard package (TF 2.21 does not
    bring it; tf.summary.scalar needs it, the raw summary op does not)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                     metadata=meta.SerializeToString())
