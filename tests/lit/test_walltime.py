"""lit/walltime.py: ``walltime/train_s``, the fit's wall time so far, logged once per epoch; a resume continues it."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger

from ddpm_lightning.lit import walltime
from ddpm_lightning.lit.walltime import TAG, TrainTime


class Clock(pl.Callback):
    """A fake ``perf_counter``: each training epoch takes exactly 60 s (the test never depends on speed)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.now += 60.0


def _fit(tmp: Path, clock: Clock, epochs: int, ckpt_path: Path | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        callbacks=[clock, TrainTime()],
        logger=CSVLogger(tmp, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(BoringModel(), ckpt_path=ckpt_path)
    return trainer


def _logged(tmp: Path) -> list[tuple[int, float]]:
    table = pd.read_csv(tmp / "metrics.csv")
    rows = table[table[TAG].notna()]
    return list(zip(rows["epoch"].astype(int), rows[TAG]))


@pytest.mark.e2e
def test_train_time_is_logged_once_per_epoch_and_a_resume_continues_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(now=1000.0)
    monkeypatch.setattr(walltime, "perf_counter", clock)
    trainer = _fit(tmp_path / "straight", clock, epochs=3)
    assert _logged(tmp_path / "straight") == [(0, 60.0), (1, 120.0), (2, 180.0)]  # seconds since fit start
    assert float(trainer.callback_metrics[TAG]) == 180.0

    clock.now = 5.0  # a new process: its own clock origin
    first = _fit(tmp_path / "first", clock, epochs=2)
    first.save_checkpoint(tmp_path / "two_epochs.ckpt")
    clock.now = 7000.0
    _fit(tmp_path / "resumed", clock, epochs=3, ckpt_path=tmp_path / "two_epochs.ckpt")
    assert _logged(tmp_path / "resumed") == [(2, 180.0)]  # 120 s of the first process + 60 s of this one


def test_the_report_reads_the_tag_this_callback_logs() -> None:
    from ddpm_lightning.reporting.quality_compute import TIME_TAG  # a string there: the report loads no Lightning

    assert TIME_TAG == TAG
