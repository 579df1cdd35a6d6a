"""Progress and prompt interruption for sampling, which takes minutes on CPU (1000 ancestral steps).

- ``SamplingBar``: a ``callback(done, total)`` for ``Sampler.sample`` / ``DiffusionModule.generate``: a tqdm
  bar with steps and ETA, and one log line with the cost when the chain ends.
- ``SamplingProgress``: a Lightning callback that gives every ``generate`` inside ``fit`` (the sample grid,
  the generative metrics) such a bar, below Lightning's own bars, and stops sampling between two steps
  when SIGTERM is pending (``trainer.received_sigterm``): Lightning's loops only check it between batches,
  so without this a SIGTERM waits for the whole chain (minutes). ``InterruptCheckpoint`` then saves.
  Under DDP the chain finishes first (the ranks meet in an all_gather of the samples right after).
- ``TrainProgressBar``: Lightning's ``TQDMProgressBar`` whose epoch bar's it/s counts training steps only: its
  clock (``PausableClock``) stands still from the epoch's last training batch, or a validation start, to the
  next training batch, so validation and per-epoch sampling (minutes on CPU) do not dilute the rate.
  It shows the training loss, read only when the bar redraws.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ddpm_lightning.lit.module import DiffusionModule, StepCallback

log = logging.getLogger(__name__)


class SamplingBar:
    """``callback(done, total)`` over one ``generate``: opens a bar at the first step, closes it at the last
    and logs ``sampled <what>: <total> steps in <s> s (<ms> ms/step)``."""

    def __init__(self, desc: str = "Sampling", enabled: bool = True, position: int = 0) -> None:
        self.desc, self.enabled, self.position = desc, enabled, position
        self._bar: Any = None
        self._start = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self._start == 0.0:  # the first step of this chain
            self._start = time.perf_counter()
            if self.enabled and self._bar is None:
                self._bar = Tqdm(
                    desc=self.desc,
                    total=total,
                    position=self.position,
                    leave=False,
                    unit="step",
                    dynamic_ncols=True,
                    file=sys.stdout,
                )
        if self._bar is not None:
            self._bar.n = done
            self._bar.refresh() if done == total else self._bar.update(0)
        if done == total:
            self.close()
            cost = time.perf_counter() - self._start
            log.info("%s: %d steps in %.1f s (%.1f ms/step)", self.desc, total, cost, 1000 * cost / max(total, 1))
            self._start = 0.0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class SamplingProgress(pl.Callback):
    """A progress bar and a cost line for each sampling run during ``fit``; stops it promptly on SIGTERM."""

    def __init__(self, bar: bool = True) -> None:
        self.bar = bar

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(pl_module, DiffusionModule):
            pl_module.sampling_progress = lambda n: self._callback(trainer, n)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(pl_module, DiffusionModule):
            pl_module.sampling_progress = None

    def _callback(self, trainer: pl.Trainer, n: int) -> StepCallback:
        progress = trainer.progress_bar_callback
        enabled = self.bar and trainer.is_global_zero and progress is not None and not progress.is_disabled
        position = 2 * getattr(progress, "process_position", 0) + 2  # below the epoch and validation bars
        bar = SamplingBar(f"Sampling {n} images", enabled=enabled, position=position)

        def step(done: int, total: int) -> None:
            # Between two network calls: seconds, not the rest of the chain. Single process only: under DDP the
            # other ranks would wait for this one's samples in all_gather, so there the chain finishes first.
            if trainer.received_sigterm and trainer.world_size == 1:
                bar.close()
                log.warning("SIGTERM during sampling (step %d of %d): stopping", done, total)
                raise SIGTERMException
            bar(done, total)

        return step


class PausableClock:
    """A clock for a tqdm bar (its ``_time``) that stands still while paused: ``source()`` minus the pauses."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self.source = source
        self._paused_at: float | None = None
        self._paused_s = 0.0

    def __call__(self) -> float:
        return (self.source() if self._paused_at is None else self._paused_at) - self._paused_s

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self.source()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._paused_s += self.source() - self._paused_at
            self._paused_at = None


class TrainProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` whose epoch bar's rate (it/s, ETA) is over training time only (``PausableClock``), and
    which shows ``train/loss_step`` and ``train/loss_epoch``. The module logs them without ``prog_bar``: Lightning
    converts a ``prog_bar`` value to a Python number after every step (a device→host read that makes a GPU step
    wait); this bar reads them only when it redraws (``refresh_rate``)."""

    SHOWN = ("train/loss_step", "train/loss_epoch")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = PausableClock()

    def init_train_tqdm(self) -> Tqdm:
        bar = super().init_train_tqdm()
        self.clock.source = getattr(bar, "_time", time.time)  # tqdm's own clock, paused around the rest
        bar._time = self.clock
        bar.start_t = bar.last_print_t = self.clock()
        return bar

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, int | str | float | dict]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the TensorBoard run's name (the overrides), cut to 4 characters: noise
        metrics = trainer.callback_metrics
        for key in self.SHOWN:  # logged without prog_bar (Lightning would read them back after every step)
            if key in metrics:
                items[key] = f"{float(metrics[key]):.3f}"
        return items

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.clock.resume()
        super().on_train_epoch_start(trainer, *args)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.clock.resume()
        super().on_train_batch_start(trainer, pl_module, *args)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        batch_idx = args[-1]
        if self._train_progress_bar is not None and batch_idx + 1 == self.train_progress_bar.total:
            self.clock.pause()  # the epoch's training is done: what follows (sampling, metrics) is not counted

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.clock.pause()
        super().on_validation_start(trainer, pl_module)
