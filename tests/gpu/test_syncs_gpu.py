"""GPU tier: steady training steps make no host synchronisation (``torch.cuda.set_sync_debug_mode``), the
property that ``tests/lit/test_host_syncs.py`` checks on CPU by counting value reads."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from benchmarks.syncs import count_training_syncs
from ddpm_lightning.cli import _compose
from tests.helpers.gpu import ACCELERATOR, DEVICE

EVAL = ("sample_grid", "generative_metrics", "denoising_metrics")


class SyncDebugInSteadySteps(pl.Callback):
    """CUDA's sync-debug mode "warn" in each step that neither logs nor redraws the bar (after 5 warm-up
    steps); every synchronisation there is recorded with its global step."""

    def __init__(self) -> None:
        self.syncs: list[tuple[int, str]] = []
        self._record: Any = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        self._stop()
        refresh = getattr(trainer.progress_bar_callback, "refresh_rate", 0) or 0
        periodic = (trainer.global_step + 1) % trainer.log_every_n_steps == 0 or (refresh and (idx + 1) % refresh == 0)
        if trainer.global_step >= 5 and not periodic and idx + 1 < trainer.num_training_batches:
            self._record = warnings.catch_warnings(record=True)
            self._log = self._record.__enter__()
            warnings.simplefilter("always")
            self._step = trainer.global_step
            torch.cuda.set_sync_debug_mode("warn")

    def _stop(self) -> None:
        if self._record is not None:
            torch.cuda.set_sync_debug_mode("default")
            self.syncs += [(self._step, str(w.message)) for w in self._log if "synchroniz" in str(w.message)]
            self._record.__exit__(None, None, None)
            self._record = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stop()


@pytest.mark.skipif(DEVICE != "cuda", reason="CUDA's sync-debug mode needs a GPU")
def test_steady_training_steps_do_not_synchronise(tmp_path: Path, data_dir: Path) -> None:
    """speed=gpu (the data on the device, the preset's precision), the default callbacks and logger."""
    cfg = _compose(
        "train",
        [
            "speed=gpu",
            f"trainer.accelerator={ACCELERATOR}",
            "T=20",
            "trainer.log_every_n_steps=50",
            f"paths.output_dir={tmp_path}",
        ],
    )
    debug = SyncDebugInSteadySteps()
    counter = count_training_syncs(cfg, steps=60, extra_callbacks=[debug], skip=EVAL)
    assert len(counter.steps) == 60 and counter.summary()["reads_per_steady_step"] == 0, counter.summary()
    assert not debug.syncs, debug.syncs[:5]
