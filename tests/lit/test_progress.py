"""Sampling progress: the sampler's step callback, one count over generate's chunks, prompt SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddpm_lightning.core import schedules
from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import DDIM, Ancestral
from ddpm_lightning.lit.checkpoint import read_checkpoint
from ddpm_lightning.lit.module import DiffusionModule
from tests.helpers.run import DATA_DIR, TINY, wait_for


def test_sampler_calls_back_after_each_step() -> None:
    calls: list[tuple[int, int]] = []
    schedule = schedules.linear(T=10)
    DDIM(DiffusionProcess(schedule, Gaussian()), num_steps=4).sample(
        lambda z, t: torch.zeros_like(z), (2, 1, 8, 8), callback=lambda i, n: calls.append((i, n))
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_generate_counts_the_steps_of_all_chunks_and_can_be_stopped() -> None:
    module = DiffusionModule(CNN(channels=(4,)), schedules.linear(T=5), Gaussian(), Ancestral)
    calls: list[tuple[int, int]] = []
    module.generate(5, batch_size=2, callback=lambda i, n: calls.append((i, n)))  # 3 chunks x 5 steps
    assert calls == [(i, 15) for i in range(1, 16)]

    class Stop(Exception):
        pass

    def stop_at_3(i: int, n: int) -> None:
        if i == 3:
            raise Stop

    module.sampling_progress = lambda n: stop_at_3  # what SamplingProgress installs during fit
    with pytest.raises(Stop):
        module.generate(4)


@pytest.mark.e2e
def test_sigterm_during_per_epoch_sampling_stops_it_between_two_steps(tmp_path: Path, data_dir: Path) -> None:
    """The first per-epoch chain (the metrics' 8 samples, 4000 steps; the grid's comes after it) is under way when
    SIGTERM arrives: the run saves and exits without finishing it (no grid file), instead of after the whole chain
    (old code: minutes at T = 1000)."""
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ddpm_lightning.train",
                *TINY,
                "T=4000",
                "callbacks.sample_grid.n=16",
                f"hydra.run.dir={run_dir}",
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DDPM_DATA_DIR": str(DATA_DIR)},
        )
        started = wait_for(lambda: "Sampling 8 images" in log.read_text(), proc)  # the metrics' bar: sampling began
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    out = log.read_text()
    assert started, out[-3000:]
    assert code in (0, 143), out[-3000:]  # Lightning's SIGTERMException exits with 0 (143 after #15)
    assert "SIGTERM during sampling" in out and "interrupted (SIGTERMException)" in out, out[-3000:]
    assert not (run_dir / "samples" / "epoch_000.png").exists()  # the chain was left, not finished
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 2
