"""The report's figures (matplotlib, Agg backend): per-epoch curves, noise schedules, sample grids.

Every function writes one PNG and returns notes for the markdown report (a metric no run logged,
a sample epoch replaced by the nearest available one, a schedule that could not be built).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from ddpm_lightning.core.schedules import NoiseSchedule  # noqa: E402
from ddpm_lightning.reporting.runs import Run, nearest_epoch  # noqa: E402
from ddpm_lightning.utils import first_line  # noqa: E402


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.2 / fig.get_figheight()))  # 0.2 in kept for the suptitle
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(
    runs: list[Run], panels: list[tuple[str, str]], labels: dict[str, str], path: Path, title: str
) -> list[str]:
    """One panel per (key, y label) some run logged: the key's per-epoch values, one line per run (failed
    runs dashed). Keys no run logged get no panel, only a note (one empty panel if none was logged)."""
    notes = []
    logged = [(k, y) for k, y in panels if any((run.series(k) or ([], []))[0] for run in runs)]
    for key, _ in panels:
        if (key, _) not in logged:
            notes.append(f"{path.name}: `{key}` was not logged by any run")
    shown = logged or panels[:1]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 3.8), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], shown):
        drawn, epochs = 0, set()
        for run in runs:
            series = run.series(key)
            if not series or not series[0]:
                continue
            epochs.update(series[0])
            style = "--" if run.status != "ok" else "-"
            suffix = f" ({run.status})" if run.status != "ok" else ""
            ax.plot(series[0], series[1], style, marker="o", markersize=3, label=labels[run.name] + suffix)
            drawn += 1
        ax.set_title(key)
        if drawn:
            ax.set_xlabel("epoch")
            if len(epochs) <= 12:  # few epochs (or one): a tick on each
                ax.set_xticks(sorted(epochs))
                ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        else:
            _empty(ax, "none of " + ", ".join(k for k, _ in panels) + " was logged by any run")
    fig.suptitle(title)
    _save(fig, path)
    return notes


def _schedule_label(schedule: NoiseSchedule) -> str:
    return f"{schedule.name}: β {schedule.betas[1].item():.3g}→{schedule.betas[-1].item():.3g}, T={schedule.T}"


def plot_schedules(runs: list[Run], path: Path) -> list[str]:
    """β_t, ᾱ_t = Π_{s≤t}(1 − β_s) and SNR(t) = ᾱ_t / (1 − ᾱ_t) (Ho et al. 2020, eq. 4) of each distinct
    schedule the runs used, built from each run's config with ``hydra.utils.instantiate``."""
    notes: list[str] = []
    schedules: dict[str, tuple[NoiseSchedule, list[str]]] = {}
    for run in runs:
        node = run.config.get("schedule")
        if node is None:
            continue
        try:
            key = json.dumps(OmegaConf.to_container(node, resolve=True), sort_keys=True, default=str)
            if key not in schedules:
                schedules[key] = (instantiate(node), [])
            schedules[key][1].append(run.name)
        except Exception as e:  # a failed run's bad schedule, e.g. beta_end=2.0
            notes.append(f"{path.name}: schedule of run {run.name} not drawn: {first_line(e)}")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if not schedules:
        for ax in axes:
            _empty(ax, "no schedule could be built from the runs' configs")
    for schedule, names in schedules.values():
        t = torch.arange(1, schedule.T + 1, device="cpu").numpy()  # (T,)
        label = f"{_schedule_label(schedule)} (run{'s' if len(names) > 1 else ''} {', '.join(names)})"
        axes[0].plot(t, schedule.betas[1:].numpy(), label=label)
        axes[1].plot(t, schedule.alpha_bars[1:].numpy(), label=label)
        axes[2].semilogy(t, schedule.snr().numpy(), label=label)
    for ax, title in zip(axes, ("β_t", "ᾱ_t", "SNR(t) = ᾱ_t / (1 − ᾱ_t)")):
        ax.set_title(title)
        if schedules:
            ax.set_xlabel("t")
            ax.grid(alpha=0.3)
    if schedules:
        axes[0].legend(fontsize=7)
    fig.suptitle("noise schedules used")
    _save(fig, path)
    return notes


def plot_samples(runs: list[Run], labels: dict[str, str], early: int | None, late: int | None, path: Path) -> list[str]:
    """Each run's fixed-seed sample grid at the ``early`` and ``late`` epoch side by side (None: the run's
    first / last grid); where a run has no grid for that epoch, the nearest epoch it has, said so in the title."""
    notes: list[str] = []
    with_samples = [r for r in runs if r.samples]
    for run in runs:
        if not run.samples:
            notes.append(f"{path.name}: run {run.name} ({run.status}) has no sample grids")
    rows = max(1, len(with_samples))
    fig, axes = plt.subplots(rows, 2, figsize=(7, 3.6 * rows), squeeze=False)
    if not with_samples:
        for ax in axes[0]:
            _empty(ax, "no run has sample grids (samples/epoch_XXX.png)")
    for row, run in zip(axes, with_samples):
        first, last = min(run.samples), max(run.samples)
        for ax, (which, wanted) in zip(
            row, (("early", first if early is None else early), ("late", last if late is None else late))
        ):
            epoch = nearest_epoch(list(run.samples), wanted)
            assert epoch is not None
            ax.imshow(mpimg.imread(run.samples[epoch]), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if epoch == wanted:
                title = f"{which}: epoch {epoch}"
            else:
                title = f"{which}: epoch {epoch} (nearest to {wanted})"
                notes.append(
                    f"{path.name}: run {run.name}: {which} epoch {wanted} not available, showing epoch {epoch}"
                )
            ax.set_title(f"{labels[run.name]}\n{title}", fontsize=8)
    early_s = "each run's first grid" if early is None else f"epoch {early}"
    late_s = "its last grid" if late is None else f"epoch {late}"
    fig.suptitle(f"fixed-seed samples, {early_s} vs {late_s} (0-based epochs)")
    _save(fig, path)
    return notes
