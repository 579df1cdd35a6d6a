"""A CPU guard for device bugs: model and data live on the CPU while the *default* device is "meta".

Any tensor made without an explicit device (``torch.linspace(...)`` where the input's device was meant)
then lands on "meta" and the next op mixing it with a CPU tensor, or reading it (``.tolist()``), fails.
On a GPU the same bug mixes cuda:0 and cpu (issue 12: ``spaced_timesteps`` crashed DPM-Solver on CUDA).
Host-side arithmetic in the package therefore states ``device="cpu"``.

torchmetrics makes 0-dim host scalars itself (``tensor(base)``), harmless on any device (a 0-dim CPU tensor
mixes with CUDA ones) but fatal next to "meta"; the metric code is therefore checked with
``NoImplicitDevice``, which fails a factory call without ``device=`` made by this package's own code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

import ddpm_lightning
from ddpm_lightning.core import samplers as samplers_mod
from ddpm_lightning.core import schedules
from ddpm_lightning.core.cold import Blur, ColdSampler
from ddpm_lightning.core.degradations import EntropyScaled, Gaussian
from ddpm_lightning.core.dpm_solver import DPMSolver
from ddpm_lightning.core.entropy import batch_entropy, image_entropy
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import DDIM, SPACINGS, Ancestral, spaced_timesteps

T = 20
SHAPE = (2, 1, 28, 28)


PACKAGE = str(Path(ddpm_lightning.__file__).parent)
FACTORIES = {
    torch.tensor,
    torch.as_tensor,
    torch.arange,
    torch.linspace,
    torch.logspace,
    torch.zeros,
    torch.ones,
    torch.empty,
    torch.full,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.eye,
}


class NoImplicitDevice(TorchFunctionMode):
    """Fails a tensor factory called by ddpm_lightning's own code without ``device=``."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs:
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(PACKAGE):
                raise AssertionError(
                    f"torch.{func.__name__} without device= at {caller.f_code.co_filename}:{caller.f_lineno}"
                )
        return func(*args, **kwargs)


@pytest.fixture()
def meta_default() -> Iterator[None]:
    """Factory calls without a device make meta tensors inside the test body."""
    with torch.device("meta"), NoImplicitDevice():
        yield


def _net() -> CNN:
    torch.manual_seed(0)
    return CNN(channels=(4, 4)).eval()  # built on the CPU, before the guard is on


SAMPLERS: dict[str, Callable[[DiffusionProcess], samplers_mod.Sampler]] = {
    "ancestral": Ancestral,
    "ancestral_beta_tilde": partial(Ancestral, variance="beta_tilde"),
    **{f"ddim_{s}": partial(DDIM, num_steps=5, eta=1.0, spacing=s) for s in SPACINGS},
    **{
        f"dpm_solver_{s}_order{o}": partial(DPMSolver, num_steps=5, order=o, spacing=s)
        for s in SPACINGS
        for o in (1, 2)
    },
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_make_nothing_on_the_default_device(name: str) -> None:
    net, schedule = _net(), schedules.linear(T=T)
    with torch.device("meta"), NoImplicitDevice():
        z = SAMPLERS[name](DiffusionProcess(schedule, Gaussian())).sample(
            net, SHAPE, torch.Generator(device="cpu").manual_seed(0), device="cpu"
        )
    assert z.device.type == "cpu" and z.shape == SHAPE and torch.isfinite(z).all()


@pytest.mark.parametrize("spacing", SPACINGS)
def test_spaced_timesteps_with_a_meta_default(spacing: str, meta_default: None) -> None:
    steps = spaced_timesteps(schedules.linear(T=T), 5, spacing)
    assert steps[0] == T and steps[-1] == 1 and len(steps) == 5


@pytest.mark.parametrize("make", [schedules.linear, schedules.geometric, schedules.custom, schedules.cosine])
def test_schedules_are_built_on_the_host(make: Callable[..., schedules.NoiseSchedule], meta_default: None) -> None:
    s = make(T=T)
    assert s.alpha_bars.device.type == "cpu" and torch.isfinite(s.snr()).all()


def test_degradations_and_cold_sampling() -> None:
    gen = torch.Generator(device="cpu").manual_seed(0)
    x0 = torch.rand(SHAPE, generator=gen) * 2 - 1  # (B, 1, 28, 28)
    t = torch.randint(1, T + 1, (SHAPE[0],), generator=gen)  # (B,)
    schedule, net = schedules.linear(T=T), _net()
    # modules (and their buffers) are built on the CPU, as a model is before .to(device)
    degradations = [Gaussian().train(), EntropyScaled().train(), EntropyScaled(per_image=True).train()]
    blur = Blur().train()
    with torch.device("meta"), NoImplicitDevice():
        for degradation in degradations:
            z_t, target = degradation.training_example(x0, t, schedule, gen)
            assert z_t.device.type == target.device.type == "cpu" and torch.isfinite(z_t).all()
            assert degradation.noise_scale > 0
        assert batch_entropy(x0, 256).device.type == image_entropy(x0, 256).device.type == "cpu"
        z_t, target = blur.training_example(x0, t, schedule)
        assert z_t.device.type == "cpu" and torch.equal(target, x0)
        for num_steps in (None, 5):
            z = ColdSampler(DiffusionProcess(schedule, blur.eval()), num_steps=num_steps).sample(
                net, SHAPE, gen, device="cpu"
            )
            assert z.device.type == "cpu" and torch.isfinite(z).all()


def test_metric_code() -> None:
    from ddpm_lightning.evaluation.metrics import class_coverage, psnr_ssim_against

    gen = torch.Generator(device="cpu").manual_seed(1)
    images = torch.rand(4, 1, 28, 28, generator=gen, device="cpu") * 2 - 1
    with NoImplicitDevice():
        psnr, ssim = psnr_ssim_against(images, images.flip(0))
    assert psnr > 0 and -1 <= ssim <= 1
    assert class_coverage(torch.tensor([0, 1, 1, 2], device="cpu"))["modes_covered"] == 3


def _module(degradation: str = "gaussian", sampler: Callable[..., samplers_mod.Sampler] = Ancestral):
    from ddpm_lightning.lit.module import DiffusionModule

    deg = Blur() if degradation == "blur" else Gaussian()
    return DiffusionModule(_net(), schedules.linear(T=T), deg, sampler).eval()


@pytest.mark.parametrize(
    ("degradation", "sampler"),
    [
        ("gaussian", Ancestral),
        ("gaussian", partial(DPMSolver, num_steps=5)),
        ("blur", partial(ColdSampler, num_steps=5)),
    ],
)
def test_module_generate_and_denoising_metrics(degradation: str, sampler: Callable[..., samplers_mod.Sampler]) -> None:
    from ddpm_lightning.evaluation import DenoisingQuality

    module = _module(degradation, sampler)
    x0 = torch.rand(3, 1, 28, 28) * 2 - 1
    with torch.device("meta"), NoImplicitDevice():
        images = module.generate(3, seed=0, batch_size=2)
    with NoImplicitDevice():  # torchmetrics' own host scalars are fine; see the module docstring
        values = DenoisingQuality(n=3, timesteps=[2, 10]).compute(module, module.process, x0)
    assert images.device.type == "cpu" and images.shape == (3, 1, 28, 28) and torch.isfinite(images).all()
    assert set(values) == {"denoise_psnr_t2", "denoise_ssim_t2", "denoise_psnr_t10", "denoise_ssim_t10"}


# ---- sampling noise: drawn in chunks of steps, one host→device copy per chunk (README "Determinism") ----
def test_chunked_noise_equals_one_draw_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk size changes how often noise is copied, never the samples (784 = 49·16 per image)."""
    net, schedule = _net(), schedules.linear(T=T)
    run = lambda: Ancestral(DiffusionProcess(schedule, Gaussian())).sample(net, SHAPE, torch.Generator().manual_seed(5))  # noqa: E731
    big = run()  # the whole chain's noise in one chunk
    monkeypatch.setattr(samplers_mod, "NOISE_CHUNK_ELEMENTS", 1)  # one step per chunk: the old behaviour
    assert torch.equal(run(), big)
    monkeypatch.setattr(samplers_mod, "NOISE_CHUNK_ELEMENTS", 3 * 2 * 784)  # 3 steps per chunk, uneven end
    assert torch.equal(run(), big)


def test_noise_is_copied_once_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = samplers_mod.noise_chunk
    monkeypatch.setattr(samplers_mod, "noise_chunk", lambda *a: (calls.append(len(r := real(*a))), r)[1])
    monkeypatch.setattr(samplers_mod, "NOISE_CHUNK_ELEMENTS", 8 * 2 * 784)
    Ancestral(DiffusionProcess(schedules.linear(T=T), Gaussian())).sample(
        _net(), SHAPE, torch.Generator().manual_seed(0)
    )
    assert calls == [8, 8, 3]  # T − 1 = 19 noisy steps (none on the last)
