"""TensorBoard for comparing runs: each run's command-line overrides as hparams (``hparams.yaml`` and
the HParams dashboard, with the final metrics), and a Custom Scalars layout that puts the loss and the
sample-quality metrics first (the Time Series and Scalars dashboards sort tags alphabetically).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

# the HParams dashboard's metric columns, in this order, where the run logged them
HEADLINE = (
    "val/loss",
    "train/loss_epoch",
    "val/fid_mnist",
    "val/fid",
    "val/kid",
    "val/psnr",
    "val/ssim",
    "val/class_entropy",
    "val/modes_covered",
)
# Custom Scalars: categories in this order; each chart a list of tag regexes (searched: anchor whole tags)
LAYOUT: dict[str, dict[str, list[Any]]] = {
    "loss": {
        "train/loss_epoch and val/loss": ["Multiline", ["^train/loss_epoch$", "^val/loss$"]],
        "train/loss_step": ["Multiline", ["^train/loss_step$"]],
    },
    "sample quality": {tag: ["Multiline", [f"^{tag}$"]] for tag in HEADLINE[2:]},
    "denoising (x0 from one call at t)": {
        "PSNR": ["Multiline", [r"val/denoise_psnr_t\d+"]],
        "SSIM": ["Multiline", [r"val/denoise_ssim_t\d+"]],
    },
    "cost (s)": {
        "walltime": ["Multiline", [r"walltime/(?!train_s$).*"]],  # each evaluation's seconds
        "training time so far": ["Multiline", ["^walltime/train_s$"]],  # cumulative (lit/walltime.py)
    },
}
# the config groups shown as hparams (Hydra's choices); overrides of other keys are added as given
GROUPS = (
    "schedule",
    "capacity",
    "model",
    "degradation",
    "sampler",
    "data",
    "trainer",
    "callbacks",
    "speed",
    "experiment",
)
SKIP = ("hydra.", "ckpt_path", "paths.")


def _value(text: str) -> str | int | float | bool:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def run_params(overrides: Sequence[str], choices: Mapping[str, str | None], all_choices: bool = True) -> dict[str, Any]:
    """The run's config choices (``schedule=linear``, ...; with ``all_choices=False`` only those overridden)
    and its other command-line overrides (``trainer.max_epochs=1``, ...). ``overrides`` and ``choices`` are
    Hydra's (``overrides.task``, ``runtime.choices``), passed in by the entry point."""
    parts = [str(o).lstrip("~").partition("=") for o in overrides]
    given = {key.lstrip("+") for key, _, _ in parts}
    params: dict[str, Any] = {
        g: str(choices[g]) for g in GROUPS if choices.get(g) is not None and (all_choices or g in given)
    }
    for key, _, value in parts:
        if key.lstrip("+") not in GROUPS and not key.lstrip("+").startswith(SKIP):
            params[key] = _value(value)
    return params


def _tensorboards(trainer: pl.Trainer) -> list[TensorBoardLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)] if trainer.is_global_zero else []


def log_run_hparams(trainer: pl.Trainer, params: dict[str, Any]) -> None:
    """At fit start: ``params`` into hparams.yaml (Lightning writes it next), and the Custom Scalars layout
    (without the charts of metrics switched off: ``GenerativeMetrics.switches``)."""
    off = {f"val/{name}" for cb in trainer.callbacks for name, on in getattr(cb, "switches", {}).items() if not on}
    layout = {
        category: {title: chart for title, chart in charts.items() if title not in off}
        for category, charts in LAYOUT.items()
    }
    for logger in _tensorboards(trainer):
        logger.log_hyperparams(params)  # no metrics given (default_hp_metric off): only hparams.yaml
        logger.experiment.add_custom_scalars(layout)


def write_hparams_summary(trainer: pl.Trainer) -> None:
    """At the end (or an interruption): the HParams plugin's session for this run, with the headline
    metrics the run logged (the dashboard reads their values from the run's scalars)."""
    from torch.utils.tensorboard.summary import hparams

    metrics = {k: float(trainer.callback_metrics[k]) for k in HEADLINE if k in trainer.callback_metrics}
    for logger in _tensorboards(trainer):
        params = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in logger.hparams.items()}
        if not params or not metrics:
            continue
        writer = logger.experiment._get_file_writer()
        for summary in hparams(params, metrics):
            writer.add_summary(summary, trainer.global_step)
        writer.flush()
