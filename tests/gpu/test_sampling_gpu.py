"""GPU tier, sampling: ``sample`` and ``evaluate`` with every sampler on the device, resume across devices,
and the determinism contract (noise from a CPU generator: the same samples on every device)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ddpm_lightning.build import load_module
from ddpm_lightning.core import schedules
from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import DDIM, Ancestral, noise_chunk
from ddpm_lightning.lit.checkpoint import read_checkpoint
from tests.helpers.gpu import ACCELERATOR, DEVICE, TINY, check_run, train
from tests.helpers.run import run_cli

SAMPLERS = {
    "ancestral": ("sampler=ancestral",),
    "ddim": ("sampler=ddim", "sampler.num_steps=5", "sampler.spacing=linear,quadratic,logsnr"),
    "dpm_solver": (
        "sampler=dpm_solver",
        "sampler.num_steps=5",
        "sampler.spacing=linear,quadratic,logsnr",
        "sampler.order=1,2",
    ),
}


@pytest.fixture(scope="session")
def blur_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("blur") / "run", "degradation=blur")


def _samples(sweep: Path) -> list[torch.Tensor]:
    tensors = [torch.load(p, weights_only=True) for p in sorted(sweep.glob("*/samples.pt"))]
    for x in tensors:
        assert x.shape == (4, 1, 28, 28) and torch.isfinite(x).all() and x.abs().max() <= 1
    return tensors


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sample_with_every_sampler(gpu_run: Path, tmp_path: Path, name: str) -> None:
    ckpt = gpu_run / "checkpoints" / "last.ckpt"
    proc = run_cli(
        "ddpm_lightning.sample",
        "-m",
        f"ckpt_path={ckpt}",
        "n=4",
        f"device={DEVICE}",
        "save_tensor=true",
        f"hydra.sweep.dir={tmp_path}",
        *SAMPLERS[name],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_samples(tmp_path)) == {"ancestral": 1, "ddim": 3, "dpm_solver": 6}[name]


def test_sample_and_evaluate_with_cold(blur_run: Path, tmp_path: Path) -> None:
    ckpt = blur_run / "checkpoints" / "last.ckpt"
    proc = run_cli(
        "ddpm_lightning.sample",
        "-m",
        f"ckpt_path={ckpt}",
        "n=4",
        f"device={DEVICE}",
        "save_tensor=true",
        f"hydra.sweep.dir={tmp_path / 's'}",
        "sampler=cold",
        "sampler.num_steps=null,5",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_samples(tmp_path / "s")) == 2
    _evaluate(ckpt, tmp_path / "e", "sampler=cold")


def _evaluate(ckpt: Path, sweep: Path, *overrides: str) -> list[dict]:
    proc = run_cli(
        "ddpm_lightning.evaluate",
        "-m",
        f"ckpt_path={ckpt}",
        "n=8",
        f"device={DEVICE}",
        "metrics.psnr_references=8",
        "metrics.inception_dims=64",
        "metrics.kid_subsets=5",
        "metrics.kid_subset_size=4",
        "denoise.n=8",
        f"hydra.sweep.dir={sweep}",
        *overrides,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    for report in reports:
        values = report["metrics"]
        assert {"fid", "kid", "fid_mnist", "psnr", "ssim"} <= set(values)
        assert all(v == v and abs(v) != float("inf") for v in values.values()), values
        assert report["settings"]["device"].startswith(DEVICE)
    return reports


def test_evaluate_with_every_sampler(gpu_run: Path, tmp_path: Path) -> None:
    """dpm_solver (log-SNR spacing) crashed here on CUDA before issue 12."""
    ckpt = gpu_run / "checkpoints" / "last.ckpt"
    reports = _evaluate(ckpt, tmp_path / "a", "sampler=ancestral")
    for name in ("ddim", "dpm_solver"):  # a sweep over the group cannot also set sampler.num_steps
        reports += _evaluate(ckpt, tmp_path / name, f"sampler={name}", "sampler.num_steps=5")
    assert [r["settings"]["samples"]["sampler"]["name"] for r in reports] == ["ancestral", "ddim", "dpm_solver"]


@pytest.mark.parametrize("direction", ["gpu_to_gpu", "cpu_to_gpu", "gpu_to_cpu"])
def test_resume_across_devices(gpu_run: Path, tmp_path: Path, direction: str) -> None:
    """A checkpoint continues on the same device, from the CPU onto the device, and back."""
    first, then = direction.split("_to_")
    run = tmp_path / "run"
    if first == "gpu":
        shutil.copytree(gpu_run, run)  # resuming writes into the run: keep the shared one as it is
    else:
        train(run, "trainer.accelerator=cpu", "trainer.max_epochs=2")
    accelerator = ACCELERATOR if then == "gpu" else "cpu"
    proc = run_cli(
        "ddpm_lightning.train",
        *TINY,
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_epochs=3",
        f"trainer.accelerator={accelerator}",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_run(run)
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 2  # 2 epochs, then 1 more
    assert (run / "samples" / "epoch_002.png").is_file()


def test_noise_is_the_same_on_every_device(device: torch.device) -> None:
    """The contract of README "Determinism": the noise comes from the CPU generator, whatever the device."""
    like = torch.empty((), device=device)
    on_device = noise_chunk((3, 1, 28, 28), torch.Generator().manual_seed(0), like, 5)
    on_cpu = noise_chunk((3, 1, 28, 28), torch.Generator().manual_seed(0), torch.empty(()), 5)
    assert all(a.device.type == device.type and torch.equal(a.cpu(), b) for a, b in zip(on_device, on_cpu))


def test_samples_agree_with_the_cpu(gpu_run: Path, device: torch.device) -> None:
    """Same checkpoint and seed, float32: the device's samples are the CPU's up to arithmetic rounding
    (cuDNN/TF32 convolutions), for a stochastic and a deterministic sampler."""
    module, _ = load_module(gpu_run / "checkpoints" / "last.ckpt")
    module.set_sample_precision("32-true")
    for factory in (Ancestral, lambda process: DDIM(process, num_steps=10, spacing="logsnr")):
        on_cpu = module.to("cpu").generate(6, seed=3, sampler=factory)
        on_device = module.to(device).generate(6, seed=3, sampler=factory)
        assert on_device.device.type == device.type
        assert (on_device.cpu() - on_cpu).abs().mean() < 0.02
    process = DiffusionProcess(schedules.linear(T=20), Gaussian()).to(device)  # timesteps stay host-side
    assert (
        DDIM(process, num_steps=5, spacing="logsnr")
        .sample(lambda z, t: 0 * z, (2, 1, 28, 28), device=device)
        .isfinite()
        .all()
    )
