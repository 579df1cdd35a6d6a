"""Sample quality against training compute: FID and classifier FID against training time / epochs.

Two sources of points, one figure (``plot_quality_vs_compute``: one line per label, log y):

- ``quality_point``: one ``evaluate`` result (its ``metrics.json``) of one checkpoint; the checkpoint gives the epochs
  trained (Lightning's ``epoch`` + 1 at an epoch-end checkpoint) and the optimizer steps;
- ``run_points``: a training run's per-epoch ``val/fid`` / ``val/fid_mnist`` and its last-epoch ``final/fid`` /
  ``final/fid_mnist`` (experiment=study_fast), each at the training time the run logged at that epoch's end
  (``walltime/train_s``, lit/walltime.py); an older run without it: its ``train_time_s`` (metrics.yaml) spread
  evenly over its epochs, and a note says so. ``python -m ddpm_lightning.report`` draws these for a sweep
  (``plot_runs``: fig_quality_compute.png).

A sweep is one line per run label, so a recipe's gain per unit of compute reads off the figure:

    from ddpm_lightning.reporting.quality_compute import plot_quality_vs_compute, quality_point
    points = [quality_point(p, label="best") for p in Path("outputs/evaluate").glob("*/metrics.json")]
    plot_quality_vs_compute(points, Path("quality_vs_compute.png"), s_per_epoch=95.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from ddpm_lightning.reporting.figures import _empty, _save
from ddpm_lightning.reporting.runs import Run

# The tag lit/walltime.py's TrainTime logs (its TAG; tests/lit/test_walltime.py keeps the two equal). Not imported from
# there: that would load Lightning, seconds of the report's start-up, for one string.
TIME_TAG = "walltime/train_s"
PANELS = (("fid", "FID (Inception)"), ("fid_mnist", "classifier FID"))
# a panel's metric -> a training run's (per-epoch, last-epoch final protocol) scalar
RUN_KEYS = {"fid": ("val/fid", "final/fid"), "fid_mnist": ("val/fid_mnist", "final/fid_mnist")}


@dataclass(frozen=True)
class QualityPoint:
    """One evaluation: its run's label, epochs and steps trained (None: unknown), and its metrics (FIDs, ...)."""

    label: str
    epochs: float
    steps: int | None
    metrics: dict[str, float]
    sampler: str = ""
    minutes: float | None = None  # training time to this point (a run's logged time); None: from s_per_epoch
    final: bool = False  # a run's last-epoch evaluation at its final protocol (final/*): a marker off the line


def quality_point(metrics_json: Path, label: str) -> QualityPoint:
    """The point of one ``evaluate`` output: its metrics, and the epochs/steps of the checkpoint it names."""
    from ddpm_lightning.lit.checkpoint import read_checkpoint  # Lightning: only for evaluate outputs

    report = json.loads(Path(metrics_json).read_text())
    ckpt = read_checkpoint(report["settings"]["checkpoint"])
    sampler = report["settings"].get("samples", {}).get("sampler", {})
    name = f"{sampler.get('name', '')}-{sampler.get('steps', '')}" if sampler else ""
    return QualityPoint(label, float(ckpt["epoch"]) + 1, int(ckpt["global_step"]), report["metrics"], name)


def run_minutes(run: Run) -> tuple[dict[int, float], str | None]:
    """Training minutes at each (0-based) epoch end of ``run``, and a note when they are estimated or unknown:
    the logged ``walltime/train_s``; else ``train_time_s`` (metrics.yaml) spread evenly over the epochs logged."""
    logged = run.series(TIME_TAG)
    if logged and logged[0]:
        return {e: s / 60 for e, s in zip(*logged)}, None
    epochs = {e for series in run.scalars.values() for e in series[0]}
    total = run.final.get("train_time_s")
    if total is None or not epochs:
        return {}, f"run {run.name}: no `{TIME_TAG}` and no train_time_s: not drawn"
    n = max(epochs) + 1
    note = f"run {run.name}: no `{TIME_TAG}` logged (an older run): its train_time_s ({total:.0f} s) spread evenly"
    return {e: total / 60 * (e + 1) / n for e in range(n)}, f"{note} over its {n} epochs"


def run_points(runs: list[Run], labels: dict[str, str]) -> tuple[list[QualityPoint], list[str]]:
    """Each FID a run logged (``RUN_KEYS``) as a point at the training time of its epoch (``run_minutes``), labelled
    ``labels[run.name]`` (with the status of a failed or incomplete run); notes on estimated or unknown times."""
    points: list[QualityPoint] = []
    notes: list[str] = []
    for run in runs:
        found: dict[tuple[int, bool], dict[str, float]] = {}  # (epoch, final) -> {metric: value}
        for metric, keys in RUN_KEYS.items():
            for final, key in zip((False, True), keys):
                for epoch, value in zip(*(run.series(key) or ([], []))):
                    found.setdefault((epoch, final), {})[metric] = value
        if not found:
            continue
        minutes, note = run_minutes(run)
        label = labels[run.name] + (f" ({run.status})" if run.status != "ok" else "")
        if note:
            notes.append(note)
            label += " (time spread evenly)" if minutes else ""
        for (epoch, final), metrics in sorted(found.items()):
            if epoch in minutes:
                points.append(QualityPoint(label, epoch + 1, None, metrics, minutes=minutes[epoch], final=final))
    return points, notes


def _draw(ax: Axes, mine: list[tuple[float, float, float]], label: str, final: bool, color: Any) -> Any:
    """One label's points (x, y, epochs): a line, or (``final``) star markers, in ``color`` (None: the next of the
    cycle); each annotated with its epochs. Returns the colour used."""
    if not mine:
        return color
    style = {"linestyle": "none", "marker": "*", "markersize": 10} if final else {"marker": "o", "markersize": 3}
    (line,) = ax.plot([m[0] for m in mine], [m[1] for m in mine], color=color, label=label, **style)
    for x, y, epochs in mine:
        ax.annotate(f"{epochs:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    return line.get_color()


def plot_quality_vs_compute(
    points: list[QualityPoint],
    path: Path,
    s_per_epoch: dict[str, float] | float | None = None,
    title: str = "",
    source: str = "point",
) -> list[str]:
    """One panel per metric of ``PANELS`` some point has, against training time in minutes (each point's
    ``minutes``, else its epochs × ``s_per_epoch``, one value or one per label) when known, else against epochs;
    one line per label (in the order of ``points``), ``final`` points as stars, log y. Returns notes (a metric no
    ``source`` has; no FID at all: one note and an empty panel)."""
    shown = [(k, y) for k, y in PANELS if any(k in p.metrics for p in points)]
    notes = [f"{path.name}: no {source} has `{k}`" for k, _ in PANELS if (k, _) not in shown] if shown else []
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(5.2 * max(1, len(shown)), 3.8), squeeze=False)
    if not shown:
        _empty(axes[0][0], f"no {source} has an FID")
        notes.append(f"{path.name}: no {source} has an FID")
    labels = list(dict.fromkeys(p.label for p in points))
    in_minutes = s_per_epoch is not None or (bool(points) and all(p.minutes is not None for p in points))

    def x_of(p: QualityPoint) -> float:
        if not in_minutes:
            return p.epochs
        if p.minutes is not None:
            return p.minutes
        rate = s_per_epoch if isinstance(s_per_epoch, (int, float)) else s_per_epoch[p.label]  # type: ignore[index]
        return p.epochs * rate / 60

    for ax, (key, ylabel) in zip(axes[0], shown):
        for label in labels:
            mine = [p for p in points if p.label == label and key in p.metrics]
            line, stars = ([(x_of(p), p.metrics[key], p.epochs) for p in mine if p.final == f] for f in (False, True))
            color = _draw(ax, sorted(line), label, False, None)
            _draw(ax, sorted(stars), f"{label}: final/*", True, color)
        ax.set_yscale("log")
        ax.set_title(f"{ylabel} (labels: epochs)")
        ax.set_xlabel("training time (min)" if in_minutes else "epochs")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title or "sample quality against training compute")
    _save(fig, path)
    return notes


def plot_runs(runs: list[Run], labels: dict[str, str], path: Path) -> list[str]:
    """The report's figure: ``run_points`` of every run against its training time; returns the notes."""
    points, notes = run_points(runs, labels)
    title = "sample quality vs training time (stars: final/*)"
    return [f"{path.name}: {n}" for n in notes] + plot_quality_vs_compute(points, path, title=title, source="run")
