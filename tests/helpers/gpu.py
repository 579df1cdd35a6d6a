"""The GPU tier's tiny runs (tests/gpu/): the device, the overrides, a training run, what a finished run holds."""

from __future__ import annotations

import math
import os
from pathlib import Path

from omegaconf import OmegaConf

from tests.helpers.run import run_cli

DEVICE = os.environ.get("DDPM_TEST_DEVICE", "cuda")
ACCELERATOR = {"cuda": "gpu", "cpu": "cpu"}.get(DEVICE, DEVICE)

# A run in seconds: tiny T, 2 batches, the default metric callbacks on 8 samples (conf/debug/quiet.yaml).
TINY = ["+debug=quiet", f"trainer.accelerator={ACCELERATOR}", "trainer.devices=1"]


def train(run_dir: Path, *overrides: str, timeout: float = 240) -> Path:
    """A tiny training run on the tier's device into ``run_dir``; fails with the end of its stderr."""
    proc = run_cli("ddpm_lightning.train", *TINY, f"hydra.run.dir={run_dir}", *overrides, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def check_run(run: Path) -> dict[str, float]:
    """What the CPU tests assert of a finished run: no FAILED, checkpoints, a grid, finite metrics."""
    assert not (run / "FAILED").exists(), (run / "FAILED").read_text()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "samples").glob("epoch_*.png"))
    metrics = OmegaConf.to_container(OmegaConf.load(run / "metrics.yaml"))
    values = {k: v for k, v in metrics.items() if k.startswith("val/")}
    assert "val/loss" in values and "val/psnr" in values, sorted(metrics)
    assert all(math.isfinite(float(v)) for v in values.values()), values
    return values
