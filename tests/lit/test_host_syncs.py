"""Device→host value reads per training step (a GPU step waits on each): counted on CPU by a TorchFunctionMode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.syncs import count_training_syncs
from ddpm_lightning.cli import _compose
from ddpm_lightning.lit.host_syncs import HostReads
from tests.helpers.run import TINY

EVAL = ("sample_grid", "generative_metrics", "denoising_metrics")  # epoch-end callbacks: no training-step hooks


def test_every_kind_of_value_read_is_counted() -> None:
    x = torch.arange(4.0)
    with HostReads() as reads:
        y = x * 2  # device work: no read
        x.sum().item(), bool(x.sum()), float(x[0]), int(x[1]), x.tolist(), x.numpy(), x[x > 1]
        if torch.isfinite(y).all():
            pass
        _ = f"{x.sum():.2f}"
    assert sum(reads.sites.values()) == 9 and all(site.endswith(".py:" + site.split(":")[-1]) for site in reads.sites)
    # the line that asked, not torch's internals
    assert all("test_host_syncs.py" in site for site in reads.sites), reads.sites
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])
    opt.zero_grad()
    with HostReads() as reads:
        opt.param_groups[0]["params"][0].sum().backward()
        opt.step()  # Adam reads its step count, a CPU tensor on every device: not a device read
    assert not reads.sites


@pytest.mark.e2e
def test_steady_training_steps_read_nothing_from_the_device(tmp_path: Path, data_dir: Path) -> None:
    """The default callbacks, logger and check_finite: no read in a step that neither logs, redraws the
    progress bar nor ends the epoch (old code: 4 per step: the finiteness check, torchmetrics' NaN check of
    the epoch-mean loss twice, Lightning's progress-bar conversion of train/loss)."""
    cfg = _compose(
        "train",
        [
            *TINY,
            "capacity.channels=[4]",
            "data.batch_size=8",
            "data.train_subset=400",
            "trainer.log_every_n_steps=50",
            f"paths.output_dir={tmp_path}",
        ],
    )
    counter = count_training_syncs(cfg, steps=30, skip=EVAL)
    summary = counter.summary()
    assert summary["steps"] == 30 and summary["steady_steps"] >= 10, summary
    assert summary["reads_per_steady_step"] == 0, [(s.global_step, s.sites) for s in counter.steady if s.reads]
    # logging steps read: train/loss_step for the logger, the finiteness flags of the steps since the last check
    assert 0 < summary["reads_per_step_mean"] < 1, summary
