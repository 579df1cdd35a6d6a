"""Sample quality against training compute: FID and classifier FID of checkpoints against training time / epochs.

Each point is one ``evaluate`` result (its ``metrics.json``) of one checkpoint; the checkpoint gives the epochs
trained (Lightning's ``epoch`` + 1 at an epoch-end checkpoint) and the optimizer steps. A sweep (several runs,
several checkpoints each) is one line per run label, so a recipe's gain per unit of compute reads off the figure:

    from ddpm_lightning.reporting.quality_compute import plot_quality_vs_compute, quality_point
    points = [quality_point(p, label="best") for p in Path("outputs/evaluate").glob("*/metrics.json")]
    plot_quality_vs_compute(points, Path("quality_vs_compute.png"), s_per_epoch=95.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from ddpm_lightning.lit.checkpoint import read_checkpoint
from ddpm_lightning.reporting.figures import _empty, _save

PANELS = (("fid", "FID (Inception)"), ("fid_mnist", "classifier FID"))


@dataclass(frozen=True)
class QualityPoint:
    """One evaluated checkpoint: its run's label, epochs and steps trained, and its metrics (FIDs, ...)."""

    label: str
    epochs: float
    steps: int
    metrics: dict[str, float]
    sampler: str = ""


def quality_point(metrics_json: Path, label: str) -> QualityPoint:
    """The point of one ``evaluate`` output: its metrics, and the epochs/steps of the checkpoint it names."""
    report = json.loads(Path(metrics_json).read_text())
    ckpt = read_checkpoint(report["settings"]["checkpoint"])
    sampler = report["settings"].get("samples", {}).get("sampler", {})
    name = f"{sampler.get('name', '')}-{sampler.get('steps', '')}" if sampler else ""
    return QualityPoint(label, float(ckpt["epoch"]) + 1, int(ckpt["global_step"]), report["metrics"], name)


def plot_quality_vs_compute(
    points: list[QualityPoint], path: Path, s_per_epoch: dict[str, float] | float | None = None, title: str = ""
) -> list[str]:
    """One panel per metric of ``PANELS`` some point has, against training time in minutes when
    ``s_per_epoch`` (one value, or one per label) is given, else against epochs; one line per label, log y.
    Returns notes (a metric no point has)."""
    notes: list[str] = []
    shown = [(k, y) for k, y in PANELS if any(k in p.metrics for p in points)]
    notes += [f"{path.name}: no point has `{k}`" for k, _ in PANELS if (k, _) not in shown]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(5.2 * max(1, len(shown)), 3.8), squeeze=False)
    if not shown:
        _empty(axes[0][0], "no evaluated checkpoint has an FID")
    labels = sorted({p.label for p in points})

    def x_of(p: QualityPoint) -> float:
        if s_per_epoch is None:
            return p.epochs
        rate = s_per_epoch if isinstance(s_per_epoch, (int, float)) else s_per_epoch[p.label]
        return p.epochs * rate / 60

    for ax, (key, ylabel) in zip(axes[0], shown):
        for label in labels:
            mine = sorted((x_of(p), p.metrics[key], p.epochs) for p in points if p.label == label and key in p.metrics)
            if not mine:
                continue
            ax.plot([m[0] for m in mine], [m[1] for m in mine], marker="o", markersize=3, label=label)
            for x, y, epochs in mine:
                ax.annotate(f"{epochs:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
        ax.set_yscale("log")
        ax.set_title(f"{ylabel} (labels: epochs)")
        ax.set_xlabel("training time (min)" if s_per_epoch is not None else "epochs")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title or "sample quality against training compute")
    _save(fig, path)
    return notes
