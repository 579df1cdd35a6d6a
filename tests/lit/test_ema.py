"""callbacks=ema: Lightning's EMAWeightAveraging through the real entry point.

Checkpoints hold the averaged weights under ``state_dict`` (raw ones under ``current_model_state``),
buffers are copied rather than averaged (``use_buffers: false``: DES's running scale and its integer
batch count stay exact), and ``load_module`` (used by sample and evaluate) samples with the EMA weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddpm_lightning.build import load_module
from ddpm_lightning.cli import _compose
from tests.helpers.run import TINY

STEPS = 4  # des_ema_runs (tests/conftest.py): 2 epochs of 2 optimizer steps


@pytest.fixture
def ema_run(des_ema_runs: dict[str, Path]) -> Path:
    """The last checkpoint of a 2-epoch run with callbacks=ema degradation=des (shared with the resume tests)."""
    return des_ema_runs["straight"] / "checkpoints" / "last.ckpt"


@pytest.mark.e2e
def test_checkpoint_holds_ema_weights(ema_run: Path) -> None:
    ckpt = torch.load(ema_run, map_location="cpu", weights_only=True)
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert set(ema) == set(raw)
    assert int(ckpt["averaging_state"]["n_averaged"]) == STEPS  # one update per optimizer step
    params = [k for k in ema if k.startswith("network.")]
    differ = [k for k in params if not torch.equal(ema[k], raw[k])]
    assert len(differ) > len(params) // 2, (
        f"EMA weights equal the raw ones for most tensors: {sorted(set(params) - set(differ))}"
    )
    # buffers are copies of the raw model's, not averages: the cumulative DES statistics stay exact
    assert torch.equal(ema["degradation.running_scale"], raw["degradation.running_scale"])
    assert int(ema["degradation.num_batches"]) == STEPS


@pytest.mark.e2e
def test_load_module_samples_with_ema_weights(ema_run: Path) -> None:
    ckpt = torch.load(ema_run, map_location="cpu", weights_only=True)
    module, _ = load_module(ema_run)
    state = module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ckpt["state_dict"].items())
    raw_module, _ = load_module(ema_run, use_ema=False)
    raw_state = raw_module.state_dict()
    assert all(torch.equal(raw_state[k], v) for k, v in ckpt["current_model_state"].items())

    images = module.generate(4, seed=3)
    assert torch.equal(images, load_module(ema_run)[0].generate(4, seed=3))  # deterministic per seed
    assert not torch.equal(images, raw_module.generate(4, seed=3))  # the EMA weights, not the raw ones


@pytest.mark.e2e
def test_sample_grid_shows_the_ema_weights(ema_run: Path, tmp_path: Path) -> None:
    """The per-epoch grid is sampled while the averaged weights are swapped in (at validation end)."""
    from ddpm_lightning.lit.callbacks import save_grid

    grid = ema_run.parent.parent / "samples" / "epoch_001.png"  # the last epoch's: the weights of last.ckpt
    n = _compose("train", TINY).callbacks.sample_grid.n
    ema = save_grid(load_module(ema_run)[0].generate(n, seed=1234), tmp_path / "ema.png")
    raw = save_grid(load_module(ema_run, use_ema=False)[0].generate(n, seed=1234), tmp_path / "raw.png")
    assert grid.read_bytes() == ema.read_bytes() != raw.read_bytes()


def test_ema_composes_with_the_study_metrics() -> None:
    cfg = _compose("train", ["callbacks=[ema,metrics]"])
    assert list(cfg.callbacks)[-1] == "ema"  # after the metric callbacks: they see the EMA weights
    assert cfg.callbacks.ema._target_ == "lightning.pytorch.callbacks.EMAWeightAveraging"
    assert cfg.callbacks.generative_metrics.n == 1000 and cfg.callbacks.generative_metrics.fid
    assert "ema" not in _compose("train", []).callbacks  # off by default: the study as it was
