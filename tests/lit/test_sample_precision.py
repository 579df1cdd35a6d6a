"""Sampling precision: the network runs under the run's autocast when sampling, the chain stays float32."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from ddpm_lightning.build import load_module
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.samplers import DDIM
from tests.helpers.run import run_cli

pytestmark = pytest.mark.e2e  # every test here runs an entry point in a subprocess


def _autocast_seen(module, precision: str) -> set[tuple[bool, torch.dtype]]:
    """(autocast on, its CPU dtype) at every network call of one tiny sampling run in ``precision``."""
    seen: set[tuple[bool, torch.dtype]] = set()
    hook = module.network.register_forward_pre_hook(
        lambda *_: seen.add((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
    )
    module.set_sample_precision(precision)
    try:
        # one image, 2 DDIM steps: bf16 is emulated (slow) on CPUs without native bf16; every sampler runs its
        # network under the same autocast (DiffusionModule.generate)
        images = module.generate(1, seed=1, sampler=partial(DDIM, num_steps=2))
    finally:
        hook.remove()
    assert images.dtype == torch.float32 and images.shape == (1, 1, 28, 28)
    return seen


def test_network_runs_in_the_sample_precision(trained_run: Path) -> None:
    module, cfg = load_module(trained_run / "checkpoints" / "last.ckpt")
    assert module.sample_precision == cfg.trainer.precision  # default: the run's training precision
    assert _autocast_seen(module, "bf16-mixed") == {(True, torch.bfloat16)}
    assert {on for on, _ in _autocast_seen(module, "32-true")} == {False}
    with pytest.raises(
        DDPMError, match=r"sample precision must be one of \['32-true', .*'bf16-mixed', '16-mixed'\], got 'fp8'"
    ):
        module.set_sample_precision("fp8")


def test_sample_cli_precision(trained_run: Path, tmp_path: Path) -> None:
    last = trained_run / "checkpoints" / "last.ckpt"
    tensors = {}
    for precision in ("32-true", "bf16-mixed"):
        out = tmp_path / f"{precision}.png"
        proc = run_cli(
            "ddpm_lightning.sample",
            f"ckpt_path={last}",
            "n=2",
            "sampler=ddim",
            "sampler.num_steps=4",  # bf16 is emulated (slow) on CPUs without native bf16
            f"precision={precision}",
            f"output={out}",
            "save_tensor=true",
            f"hydra.run.dir={tmp_path / precision}",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        tensors[precision] = torch.load(out.with_suffix(".pt"), weights_only=True)
    low, full = tensors["bf16-mixed"], tensors["32-true"]  # the same seed
    assert not torch.equal(low, full)  # bf16 really changes the network's numbers ...
    assert (low - full).abs().mean() < 0.05  # ... but not the samples' content
    proc = run_cli(
        "ddpm_lightning.sample", f"ckpt_path={last}", "n=4", "precision=fp8", f"hydra.run.dir={tmp_path / 'bad'}"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: sample precision must be one of ['32-true', '32', '64-true', 'bf16-mixed', '16-mixed'], got 'fp8'"
    )
