"""What a user sees: the start lines (what runs, where), the pace, the results' place and commands, no
warning noise, a loss curve on short epochs, hparams for TensorBoard, fast override errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers.run import DATA_DIR, TINY, run_cli

# 7 batches of 32 per epoch and the default log_every_n_steps (50): the README's short-run shape
SHORT = [*TINY, "trainer.limit_train_batches=null", "trainer.log_every_n_steps=50", "data.train_subset=224"]
NOISE = ("Warning", "warn(", "litlogger", "FLOPs", "LeafSpec", "model summary")


@pytest.mark.e2e
def test_a_run_says_what_runs_where_and_how_to_open_it_without_noise(tmp_path: Path, data_dir: Path) -> None:
    run_dir = tmp_path / "run"
    # cold: a fresh interpreter, as a user starts it, so that import-time noise would show too
    proc = run_cli("ddpm_lightning.train", *SHORT, "schedule=geometric", f"hydra.run.dir={run_dir}", warm=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert not [n for n in NOISE if n in out], out[-5000:]  # run_cli no longer hides warnings
    start = out.index("run directory: ")
    assert (
        "schedule=geometric" in out[:start] and "1 epochs x 7 steps each (batch 32), log every 1 steps" in out[:start]
    )
    assert f"run directory: {run_dir}" in out and "s/step: training ~" in out and "epoch 0 took" in out
    assert "Sampling 4 images" in out and "Sampling 8 images" in out  # the grid's and the metrics' bars
    assert "v_num" not in out  # the bar would show the TensorBoard run's name (the overrides), cut to 4 characters
    end = out.index("final metrics:")
    assert f"results: {run_dir}" in out[end:] and "val/loss" in out[end:]
    assert f"python -m ddpm_lightning.report {run_dir}" in out[end:] and f"tensorboard --logdir {run_dir}" in out[end:]

    (tb_run,) = (run_dir / "tensorboard").iterdir()  # the TensorBoard run, named by the overrides (old: none)
    expected = "debug=tiny,trainer.limit_train_batches=null,trainer.log_every_n_steps=50,data.train_subset=224"
    assert tb_run.name == f"{expected},schedule=geometric"
    acc = EventAccumulator(str(tb_run))
    acc.Reload()
    groups = sorted({tag.split("/")[0] for tag in acc.Tags()["scalars"]})
    assert groups == ["train", "val", "walltime", "xaxis"]  # loss and metrics first (old: epoch, time, train, val)
    assert len(acc.Scalars("train/loss_step")) == 7  # the interval is scaled to the 7-batch epoch
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")  # the HParams dashboard's session
    assert "custom_scalars__config__" in acc.Tags()["tensors"]  # loss and sample quality first
    hparams = OmegaConf.load(tb_run / "hparams.yaml")
    assert hparams["schedule"] == "geometric" and hparams["data.train_subset"] == 224  # the overrides ...
    assert "hydra.run.dir" not in hparams and "capacity" not in hparams  # ... not where it writes, nor defaults
    assert acc.Images("val/samples")[0].width == 4 * 62  # a 2x2 grid of 28-px digits (62 px), upscaled 4x


@pytest.mark.e2e
def test_a_multirun_prints_its_sweep_directory_and_report_command(tmp_path: Path, data_dir: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "ddpm_lightning.train",
        "-m",
        *TINY,
        "seed=0,1",
        "callbacks.generative_metrics=null",
        "callbacks.denoising_metrics=null",
        f"hydra.sweep.dir={sweep}",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count(f"sweep directory: {sweep}") == 2  # at the start and at the end
    assert proc.stdout.rstrip().endswith(f"tensorboard --logdir {sweep}  (the HParams tab compares the runs)"), out[
        -2000:
    ]
    assert f"python -m ddpm_lightning.report {sweep}\n" in out
    tb_runs = sorted(str(p.parent.relative_to(sweep)) for p in sweep.rglob("events.out.tfevents.*"))
    overrides = "callbacks.generative_metrics=null,callbacks.denoising_metrics=null"
    assert tb_runs == [f"{i}/tensorboard/debug=tiny,seed={i},{overrides}" for i in (0, 1)]  # old: <n>/tensorboard


@pytest.mark.e2e
@pytest.mark.parametrize("entry", ["train", "sample", "evaluate"])
def test_an_override_typo_fails_before_torch_is_imported(entry: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"ddpm_lightning.{entry}", "schedul=linear"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DDPM_DATA_DIR": str(DATA_DIR)},
    )
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == ["error: Could not override 'schedul'. To append to your config use +schedul=linear"]
    imported = {ln.split("|")[-1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
    assert "torch" not in imported and "lightning" not in imported
