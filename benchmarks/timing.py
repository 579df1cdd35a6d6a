"""EpochTimer: where each epoch's wall time goes, one JSON line per epoch (used by gpu_study.py).

Add it to any training run: ``+callbacks.epoch_timer._target_=benchmarks.timing.EpochTimer
+callbacks.epoch_timer.path=epochs.jsonl`` (run from the repository root). It sits after the other
callbacks, so for each epoch:
- ``train_s``: first training batch start → validation start (the 468 training steps);
- ``val_s``: validation start → last validation batch end (val/loss);
- ``eval_s``: last validation batch end → this callback's ``on_validation_epoch_end``, i.e. the metric
  callbacks' sampling, FID/KID, PSNR/SSIM, denoising metrics;
- ``epoch_s``: epoch start → next epoch start (or the end of fit): also the sample grid and checkpoints;
- ``metric_times``: the ``walltime/*`` seconds the metric callbacks logged this epoch (``walltime/generate_s``, ...
  for the per-epoch metrics, ``walltime/final_*`` for the last epoch's final evaluations).
GPU work is synchronised at each mark.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


class EpochTimer(pl.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.marks: dict[str, float] = {}
        self.started_at = 0.0
        self.epoch: int | None = None
        self.metric_times: dict[str, float] = {}

    def _now(self, pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def _flush(self, end: float) -> None:
        if self.epoch is None:
            return
        m = self.marks
        row: dict[str, Any] = {"epoch": self.epoch, "epoch_s": end - m["start"]}
        if "val_start" in m:
            row["train_s"] = m["val_start"] - m["start"]
            last_val = m.get("val_batch_end", m["val_start"])
            row["val_s"] = last_val - m["val_start"]
            if "val_epoch_end" in m:
                row["eval_s"] = m["val_epoch_end"] - last_val
        if self.metric_times:
            row["metric_times"] = self.metric_times
        row["started_at"] = self.started_at  # wall clock (time.time()) of the epoch start
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.epoch = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = self._now(pl_module)
        self._flush(now)
        self.epoch, self.marks, self.started_at = trainer.current_epoch, {"start": now}, time.time()
        self.metric_times: dict[str, float] = {}

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.epoch is not None and not trainer.sanity_checking:
            self.marks["val_start"] = self._now(pl_module)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.epoch is not None and not trainer.sanity_checking:
            self.marks["val_batch_end"] = time.perf_counter()  # synchronised once, at the epoch end below

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.epoch is not None and not trainer.sanity_checking:
            self.marks["val_epoch_end"] = self._now(pl_module)
            metrics = trainer.callback_metrics  # this callback comes after the metric callbacks
            self.metric_times = {
                k: float(v) for k, v in metrics.items() if k.startswith("walltime/") and v.numel() == 1
            }

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(self._now(pl_module))
