"""Sampling progress: the sampler's step callback, one count over generate's chunks, prompt SIGTERM."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import tqdm
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, TensorDataset

from ddpm_lightning.core import schedules
from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import DDIM, Ancestral
from ddpm_lightning.lit.checkpoint import read_checkpoint
from ddpm_lightning.lit.module import DiffusionModule
from ddpm_lightning.lit.progress import TrainProgressBar
from tests.helpers.run import TINY, popen, wait_for


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
        proc = popen(
            "ddpm_lightning.train",
            *TINY,
            "T=4000",
            "callbacks.sample_grid.n=16",
            f"hydra.run.dir={run_dir}",
            stdout=f,
            stderr=subprocess.STDOUT,
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


class _Tiny(pl.LightningModule):
    """3 training steps of 1 s each on a fake clock, then 1000 s of 'sampling' at validation end."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.layer, self.clock = torch.nn.Linear(2, 1), clock

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.clock[0] += 1.0
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.clock[0] += 5.0

    def on_validation_epoch_end(self) -> None:
        self.clock[0] += 1000.0  # the sample grid and the generative metrics

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.e2e
@pytest.mark.parametrize("bar_class", [TrainProgressBar, TQDMProgressBar])
def test_the_epoch_bars_rate_counts_training_steps_only(
    bar_class: type[TQDMProgressBar], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tqdm's clock is a fake one that only the steps move: the bar shows 1 it/s (3 steps in 3 s), not
    3 steps in 1008 s (0.003 it/s: Lightning's bar, whose clock runs through validation and sampling)."""
    clock = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])  # what each tqdm bar takes as its `_time`
    bar = bar_class()
    data = DataLoader(TensorDataset(torch.randn(6, 2)), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    trainer.fit(_Tiny(clock), data, data)
    shown = bar.train_progress_bar.format_dict  # what the epoch bar shows at the end (it/s = n / elapsed)
    assert shown["n"] == 3 and clock[0] == 1008.0
    rate = shown["n"] / shown["elapsed"]
    assert rate == pytest.approx(1.0) if bar_class is TrainProgressBar else rate < 0.01
