"""Shared test fixtures: where the real MNIST files and FID weights are, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

DATA_DIR = Path(os.environ.get("DDPM_DATA_DIR", SHARED / "data"))
FID_WEIGHTS = Path(os.environ.get("DDPM_FID_WEIGHTS", SHARED / "weights" / "pt_inception-2015-12-05.pth"))

# Overrides that shrink a training run to seconds on CPU (real MNIST files, tiny T, few batches).
TINY = [
    "T=20",
    "trainer.max_epochs=1",
    "data.train_subset=256",
    "data.val_subset=128",
    "data.batch_size=64",
    "+trainer.limit_train_batches=2",
    "trainer.log_every_n_steps=1",
    "callbacks.sample_grid.n=4",
    "callbacks.generative_metrics.n=8",
    "callbacks.generative_metrics.psnr_references=8",
    "callbacks.denoising_metrics.n=8",
]


def run_cli(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` as a user would; returns the completed process (text output)."""
    # warnings shown: tests see what users see. PYTHONPATH: test-only callbacks (tests.helpers) from any cwd
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "DDPM_DATA_DIR": str(DATA_DIR), "PYTHONPATH": pythonpath, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"real MNIST files not found under {DATA_DIR}/MNIST/raw (set DDPM_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A tiny 2-epoch run through the real entry point, shared by the tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    proc = run_cli("ddpm_lightning.train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir
