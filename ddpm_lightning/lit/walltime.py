"""Training time per epoch: ``TrainTime`` logs ``walltime/train_s``, the wall time of the fit so far, at each epoch end.

The seconds since fit start (``on_fit_start``: after the ``setup`` hooks, i.e. data loading and the metric
callbacks' extractors and floors; the sanity check is counted), read at each training epoch end, i.e. after that
epoch's validation, sample grid and metric callbacks: the whole cost of reaching that epoch's sample quality (the
report's quality-vs-compute figure plots FID against it). The sum is kept in every checkpoint, so a resumed run
continues it: the time between the checkpoint and the interruption (work that is redone) is not counted twice.
No batch hook: no device→host read in any training step.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import lightning.pytorch as pl

TAG = "walltime/train_s"


class TrainTime(pl.Callback):
    def __init__(self) -> None:
        self.before = 0.0  # seconds of earlier processes of this run (from the checkpoint resumed)
        self.start: float | None = None  # perf_counter() at this process's fit start

    def seconds(self) -> float:
        """Training wall time of the run so far: earlier processes plus this one's since its fit start."""
        return self.before + (perf_counter() - self.start if self.start is not None else 0.0)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a Python float: one host→device copy per epoch; under DDP the slowest rank's time (one collective)
        pl_module.log(TAG, self.seconds(), on_epoch=True, sync_dist=True, reduce_fx="max")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.before, self.start = self.seconds(), None  # a second fit() of this trainer continues the sum

    def state_dict(self) -> dict[str, Any]:
        return {"train_s": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict.get("train_s", 0.0))
