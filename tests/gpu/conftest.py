"""The GPU tier: every entry point and option on CUDA with tiny settings (``make test-gpu``, README "GPU tier").

Every test here is marked ``gpu`` and needs CUDA; without it the whole tier is skipped at collection (CPU CI
stays green and fast). ``DDPM_TEST_DEVICE=cpu`` runs it on the CPU instead, to check a test's logic on a
machine without a GPU (slow: pick tests with -k).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

DEVICE = os.environ.get("DDPM_TEST_DEVICE", "cuda")
ACCELERATOR = {"cuda": "gpu", "cpu": "cpu"}.get(DEVICE, DEVICE)

# A run in seconds: tiny T, 2 batches, the default metric callbacks on 8 samples.
TINY = [
    "T=20",
    "trainer.max_epochs=1",
    "data.train_subset=256",
    "data.val_subset=64",
    "data.batch_size=32",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.sample_grid.n=4",
    "callbacks.progress_bar=null",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "callbacks.generative_metrics.n=8",
    "callbacks.generative_metrics.psnr_references=8",
    "callbacks.denoising_metrics.n=8",
    f"trainer.accelerator={ACCELERATOR}",
    "trainer.devices=1",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = None
    if DEVICE == "cuda" and not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="GPU tier: no CUDA device (DDPM_TEST_DEVICE=cpu runs it on the CPU)")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device(DEVICE)


def train(run_dir: Path, *overrides: str, timeout: float = 240) -> Path:
    """A tiny training run on the tier's device into ``run_dir``; fails with the end of its stderr."""
    proc = run_cli("ddpm_lightning.train", *TINY, f"hydra.run.dir={run_dir}", *overrides, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny Gaussian CNN run on the device (2 epochs), shared by the resume/sample/evaluate tests."""
    return train(tmp_path_factory.mktemp("gpu") / "run", "trainer.max_epochs=2")
