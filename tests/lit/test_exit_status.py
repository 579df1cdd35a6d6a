"""Issue 15.2 / 15.11 / 17.12: an interrupted run exits non-zero, a sweep names the jobs it did not run,
validation metrics survive a SIGTERM during validation, interrupted runs write metrics.yaml marked so.

The signal comes from the run itself at a known step (``tests.helpers.callbacks.SignalAt``): no sleeping.
A single run's exit status and marked metrics.yaml on SIGTERM / Ctrl-C: tests/lit/test_resilience.py (the signal
sent from outside, as a user or a scheduler sends it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddpm_lightning.lit.checkpoint import read_checkpoint
from ddpm_lightning.reporting.runs import event_dir
from tests.helpers.run import TINY, UNBOUNDED, run_cli

pytestmark = pytest.mark.e2e  # every test here runs an entry point in a subprocess

# UNBOUNDED: TINY without its batch limit; each test stops the run itself, by a signal at a known step


def test_sigterm_in_a_sweep_exits_non_zero_and_names_the_jobs_not_run(tmp_path: Path, data_dir: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "ddpm_lightning.train",
        "-m",
        *UNBOUNDED,
        "trainer.max_epochs=3",
        "seed=0,1,2",
        "+callbacks.sig._target_=tests.helpers.callbacks.SignalAt",
        "+callbacks.sig.step=1",
        f"hydra.sweep.dir={sweep}",
        timeout=600,
    )
    assert proc.returncode == 143, proc.stderr[-3000:]  # old code: 0, and jobs 1-2 silently never ran
    assert "jobs not run: job 1: seed=1; job 2: seed=2" in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0"]
    assert yaml.safe_load((sweep / "0" / "metrics.yaml").read_text())["status"].startswith("interrupted by SIGTERM")


def test_sigterm_during_validation_keeps_that_epochs_validation_metrics(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    # 2 validation batches (64 images, batches of 32): the signal comes after the first
    proc = run_cli(
        "ddpm_lightning.train",
        *TINY,
        "trainer.max_epochs=3",
        "+callbacks.sig._target_=tests.helpers.callbacks.SignalInValidation",
        f"hydra.run.dir={run}",
        timeout=600,
    )
    assert proc.returncode == 143, proc.stderr[-3000:]
    acc = EventAccumulator(str(event_dir(run / "tensorboard")))
    acc.Reload()
    assert "val/loss" in acc.Tags()["scalars"], proc.stderr[-2000:]  # old code: validation stopped, val/loss lost
    assert (run / "checkpoints" / "epoch_000.ckpt").is_file()  # the epoch-end checkpoint, with its val/loss
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2  # epoch 0 (2 batches) complete, its validation included
