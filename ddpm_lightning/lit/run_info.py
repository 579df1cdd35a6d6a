"""What a run tells its user: what will run and where (at start), its pace (after the first steps and the
first epoch), and where its results are with the commands that open them (at the end).

- ``RunInfo``: a Lightning callback. At fit start: the config choices and overrides, the network, T,
  epochs × steps, device and precision, what each epoch samples, the run directory. After
  ``estimate_after_steps`` steps: seconds per step and the training time per epoch; after the first
  epoch: the whole epoch's time (validation and sampling included) and the rest of the run. It also
  scales ``log_every_n_steps`` down for short epochs (``train/loss_step`` is logged at least ~10 times an
  epoch) and writes the run's overrides as TensorBoard hparams (``hparams.py``).
- ``where_lines``: the run directory and the exact ``report`` / ``tensorboard`` commands.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from ddpm_lightning.lit.hparams import GROUPS, HEADLINE, log_run_hparams, run_params, write_hparams_summary
from ddpm_lightning.lit.module import DiffusionModule

log = logging.getLogger(__name__)


def where_lines(run_dir: str | Path) -> str:
    """Where a run's (or sweep's) results are, and the commands that open them."""
    d = shlex.quote(str(Path(run_dir).resolve()))
    return (
        f"results: {d}\n  report:      python -m ddpm_lightning.report {d}\n"
        f"  TensorBoard: tensorboard --logdir {d}  (or: make tensorboard, all runs under outputs/)"
    )


def metrics_table(metrics: dict[str, float], path: str | Path) -> str:
    """The headline final metrics as a two-column table; every value is in ``path`` (metrics.yaml)."""
    keys = [k for k in (*HEADLINE, "num_parameters", "train_time_s") if k in metrics]
    width = max([len(k) for k in keys] + [6])
    rows = [
        f"  {k:<{width}}  {metrics[k]:>10.8g}" if k != "num_parameters" else f"  {k:<{width}}  {int(metrics[k]):>10,}"
        for k in keys
    ]
    return "\n".join(["final metrics:", *rows, f"  (all {len(metrics)} values: {path})"])


def _minutes(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.1f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def epoch_batches(trainer: pl.Trainer) -> int | None:
    """Training batches per epoch, known before the fit loop sets up its data (None: unknown)."""
    dm = trainer.datamodule
    train_set, batch_size = getattr(dm, "train_set", None), getattr(dm, "batch_size", None)
    if train_set is None or not batch_size:
        return None
    n = len(train_set) // int(batch_size)  # drop_last=True
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        return min(n, limit)
    return int(n * float(limit if limit is not None else 1.0))


class RunInfo(pl.Callback):
    def __init__(
        self,
        output_dir: str,
        estimate_after_steps: int = 20,
        scale_log_interval: bool = True,
        overrides: Sequence[str] = (),
        choices: Mapping[str, str | None] | None = None,
    ) -> None:
        self.output_dir = output_dir
        # the command line's overrides and config choices (Hydra's), filled by the entry point (train.py)
        self.overrides, self.choices = [str(o) for o in overrides], dict(choices or {})
        self.estimate_after_steps = estimate_after_steps
        self.scale_log_interval = scale_log_interval
        self._t0 = self._epoch_t0 = 0.0
        self._steps_t0: tuple[int, float] | None = None
        self._estimated = False
        self._first: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = epoch_batches(trainer)
        if self.scale_log_interval and batches and trainer.log_every_n_steps > batches // 4:
            trainer.log_every_n_steps = max(1, batches // 10)  # 7 batches: every step; 39: every 3
        params = run_params(self.overrides, self.choices)
        log_run_hparams(trainer, run_params(self.overrides, self.choices, all_choices=False))  # what a sweep varies
        if not trainer.is_global_zero:
            return
        choices = " ".join(f"{k}={v}" for k, v in params.items() if k in GROUPS)
        overrides = " ".join(f"{k}={v}" for k, v in params.items() if k not in GROUPS)
        lines = [f"run: {choices or '(no Hydra choices)'}" + (f"  overrides: {overrides}" if overrides else "")]
        if isinstance(pl_module, DiffusionModule):
            sampler = pl_module.make_sampler()
            sampler.set_timesteps()
            lines.append(
                f"  {type(pl_module.network).__name__}, {pl_module.num_parameters():,} parameters, "
                f"T={pl_module.schedule.T}, "
                f"sampler {sampler.name} ({len(sampler.timesteps)} steps)"
            )
        steps = (
            f"{batches} steps each (batch {getattr(trainer.datamodule, 'batch_size', '?')})" if batches else "steps: ?"
        )
        lines.append(
            f"  {trainer.max_epochs} epochs x {steps}, log every {trainer.log_every_n_steps} steps; "
            f"{trainer.strategy.root_device}, precision {trainer.precision}"
        )
        samplers = [c for c in trainer.callbacks if hasattr(c, "n") and hasattr(c, "every_n_epochs")]
        if samplers:
            lines.append(
                "  each epoch also: validation, "
                + ", ".join(f"{type(c).__name__} ({c.n} images, every {c.every_n_epochs} epochs)" for c in samplers)
            )
        lines.append(f"run directory: {Path(self.output_dir).resolve()}")
        log.info("\n".join(lines))
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self._estimated or not trainer.is_global_zero:
            return
        if self._steps_t0 is None:  # the first step (warm-up, compilation) does not count
            self._steps_t0 = (trainer.global_step, time.perf_counter())
            return
        step0, t0 = self._steps_t0
        done = trainer.global_step - step0
        batches = epoch_batches(trainer) or trainer.num_training_batches
        if done >= min(self.estimate_after_steps, max(1, int(batches) - 2)):
            per_step = (time.perf_counter() - t0) / done
            self._estimated = True
            log.info(
                "%.3f s/step: training ~%s per epoch (%d steps), plus validation and sampling (timed after epoch 0)",
                per_step,
                _minutes(per_step * batches),
                batches,
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._first is None:
            self._first = trainer.current_epoch  # the first epoch this process trains (resumed: not 0)
        if trainer.current_epoch != self._first or not trainer.is_global_zero or trainer.max_epochs is None:
            return
        epoch_s = time.perf_counter() - self._epoch_t0
        left = trainer.max_epochs - trainer.current_epoch - 1
        log.info(
            "epoch %d took %s (training, validation, sampling, metrics); ~%s for the %d epochs left",
            trainer.current_epoch,
            _minutes(epoch_s),
            _minutes(epoch_s * left),
            left,
        )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        write_hparams_summary(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        write_hparams_summary(trainer)  # an interrupted run shows in the HParams dashboard too
