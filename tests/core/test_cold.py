"""Tests for Cold Diffusion: the Gaussian-blur degradation, its prior, and Algorithm 2 sampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from ddpm_lightning.core.cold import Blur, ColdSampler, gaussian_blur
from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.schedules import linear

T = 20


def _images(n: int = 4, seed: int = 0) -> Tensor:
    """Smooth-ish random images in [−1, 1], (n, 1, 28, 28), with clearly different means."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.rand(n, 1, 30, 30, generator=g), 3, stride=1)  # (n, 1, 28, 28)
    return (x * 2 - 1 + torch.linspace(-0.5, 0.5, n).view(n, 1, 1, 1)).clamp(-1, 1)


def _spatial_blur(x: Tensor, sigma: float, radius: int) -> Tensor:
    k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).float()
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))


# ---- the degradation D(x0, t) -------------------------------------------------------------------
def test_identity_at_t0_exactly() -> None:
    x = _images()
    blur = Blur()
    assert torch.equal(blur.degrade(x, torch.zeros(4, dtype=torch.long), linear(T)), x)
    mixed = blur.degrade(x, torch.tensor([0, 5, 0, T]), linear(T))  # per-sample t
    assert torch.equal(mixed[0], x[0]) and torch.equal(mixed[2], x[2])
    assert not torch.allclose(mixed[1], x[1], atol=1e-3)


def test_fully_degraded_is_the_channel_mean_and_mean_is_preserved() -> None:
    x = _images()
    blur = Blur()
    means = x.mean(dim=(2, 3), keepdim=True)  # (4, 1, 1, 1)
    for t in range(1, T + 1):
        xt = blur.degrade(x, torch.full((4,), t), linear(T))
        assert torch.allclose(xt.mean(dim=(2, 3), keepdim=True), means, atol=1e-5)
    assert torch.allclose(xt, means.expand_as(x), atol=1e-4)  # t = T: the mean image


def test_blur_increases_with_t() -> None:
    x = _images()
    blur = Blur()
    energy = [blur.degrade(x, torch.full((4,), t), linear(T)).var(dim=(2, 3)).mean().item() for t in range(T + 1)]
    assert all(a > b for a, b in zip(energy, energy[1:]))
    assert blur.sigmas(T)[1].item() == pytest.approx(0.5) and blur.sigmas(T)[T].item() == pytest.approx(40.0)


@pytest.mark.parametrize("sigma", [1.5, 2.5, 4.0])
def test_is_a_gaussian_blur(sigma: float) -> None:
    """Away from the borders the DCT blur equals a direct spatial Gaussian convolution (for σ ≳ 1 px;
    below that the sampled kernel aliases and the DCT blur is the band-limited Gaussian)."""
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    radius = int(math.ceil(4 * sigma))
    ref = _spatial_blur(x.view(6, 1, 28, 28), sigma, radius).view(2, 3, 28, 28)
    out = gaussian_blur(x, torch.full((2,), sigma))
    inner = (..., slice(radius, -radius), slice(radius, -radius))
    assert torch.allclose(out[inner], ref[inner], atol=1e-4)


def test_blurs_compose_like_repeated_kernels() -> None:
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    twice = gaussian_blur(gaussian_blur(x, torch.full((2,), 1.2)), torch.full((2,), 2.0))
    once = gaussian_blur(x, torch.full((2,), math.hypot(1.2, 2.0)))
    assert torch.allclose(twice, once, atol=1e-5)


def test_linear_and_float32_under_autocast() -> None:
    x, y = _images(2, 0), _images(2, 1)
    blur, t = Blur(), torch.tensor([3, 9])
    d = lambda img: blur.degrade(img, t, linear(T))  # noqa: E731
    assert torch.allclose(d(x + 2 * y), d(x) + 2 * d(y), atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = blur.degrade(x, t, linear(T))
    assert out.dtype == torch.float32
    assert torch.allclose(out, blur.degrade(x, t, linear(T)), atol=1e-6)


# ---- training ---------------------------------------------------------------------------------
def test_training_example_targets_x0_and_records_the_prior() -> None:
    blur = Blur()
    assert blur.prediction == "x0"
    seen = []
    for seed in range(3):
        x0 = _images(4, seed)
        t = torch.randint(1, T + 1, (4,))
        z, target = blur.training_example(x0, t, linear(T))
        assert torch.equal(target, x0)
        assert torch.allclose(z, blur.degrade(x0, t, linear(T)))
        seen.append(x0.mean(dim=(2, 3)).flatten())
    m = torch.cat(seen)
    assert blur.prior_count.item() == 12
    assert blur.prior_mean.item() == pytest.approx(m.mean().item(), abs=1e-5)
    assert blur.prior_std.item() == pytest.approx(m.std(unbiased=False).item(), abs=1e-4)
    blur.eval()  # validation does not move the prior
    blur.training_example(torch.ones(4, 1, 28, 28), torch.full((4,), 2), linear(T))
    assert blur.prior_count.item() == 12
    fresh = Blur()
    fresh.load_state_dict(blur.state_dict())  # stored in checkpoints
    assert fresh.prior_mean.item() == blur.prior_mean.item() and fresh.prior_count.item() == 12


def test_prior_is_a_mean_image_plus_small_noise() -> None:
    blur = Blur(prior_noise=0.0)
    blur.prior_mean.fill_(-0.7)
    blur.prior_sq.fill_(0.49 + 0.1**2)  # std 0.1
    like = torch.empty(())
    x = blur.prior((2000, 1, 28, 28), torch.Generator().manual_seed(0), like)
    assert torch.equal(x, x[:, :, :1, :1].expand_as(x))  # constant images, like D(x0, T)
    assert x.mean().item() == pytest.approx(-0.7, abs=0.01)
    assert x[:, 0, 0, 0].std().item() == pytest.approx(0.1, rel=0.05)
    noisy = Blur(prior_noise=0.05)
    noisy.load_state_dict(blur.state_dict())
    y = noisy.prior((8, 1, 28, 28), torch.Generator().manual_seed(0), like)
    assert y.std(dim=(2, 3)).mean().item() == pytest.approx(0.05, rel=0.1)


# ---- Algorithm 2 ------------------------------------------------------------------------------
@pytest.mark.parametrize("num_steps", [None, 6, 1])
def test_algorithm2_with_an_exact_restorer_recovers_x0(num_steps: int | None) -> None:
    """If R returns the true x0, each step lands on D(x0, t−1), so the chain ends exactly at x0."""
    x0 = _images()
    blur, sched = Blur(), linear(T)
    oracle = lambda z, t: x0  # noqa: E731
    sampler = ColdSampler(DiffusionProcess(sched, blur), num_steps)
    x_T = blur.degrade(x0, torch.full((4,), T), sched)
    assert torch.allclose(sampler.restore(oracle, x_T), x0, atol=1e-4)
    x_7 = blur.degrade(x0, torch.full((4,), 7), sched)  # restoration from an intermediate step
    assert torch.allclose(sampler.restore(oracle, x_7, t=7), x0, atol=1e-4)


def test_algorithm2_update_rule_telescopes() -> None:
    """With R(x_t, t) = x̂0 fixed, Alg. 2 telescopes: x_0 = x_T − D(x̂0, T) + D(x̂0, 0) = x̂0 + D(x0 − x̂0, T),
    i.e. x̂0 with its mean error removed, where Alg. 1 (x_{t−1} = D(x̂0, t−1)) would end at x̂0 itself."""
    x0 = _images()
    blur, sched = Blur(), linear(T)
    bias = 0.3 * torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    x0_hat = x0 + bias
    x_T = blur.degrade(x0, torch.full((4,), T), sched)
    out = ColdSampler(DiffusionProcess(sched, blur)).restore(lambda z, t: x0_hat, x_T)
    assert torch.allclose(out, x0 + bias - bias.mean(), atol=1e-4)


def test_sample_end_to_end_with_a_network() -> None:
    torch.manual_seed(0)
    net = CNN((8, 8)).eval()
    blur = Blur()
    blur.training_example(_images(8), torch.randint(1, T + 1, (8,)), linear(T))  # record a prior
    sampler = ColdSampler(DiffusionProcess(linear(T), blur))
    a = sampler.sample(net, (3, 1, 28, 28), torch.Generator().manual_seed(0), "cpu")
    b = sampler.sample(net, (3, 1, 28, 28), torch.Generator().manual_seed(0), "cpu")
    c = sampler.sample(net, (3, 1, 28, 28), torch.Generator().manual_seed(1), "cpu")
    assert a.shape == (3, 1, 28, 28) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert len(sampler.timesteps) == T


def test_cold_sampler_needs_a_cold_degradation() -> None:
    assert ColdSampler.prediction == "x0" and Gaussian().prediction == "eps"
    with pytest.raises(DDPMError, match="cold"):
        ColdSampler(DiffusionProcess(linear(T), Gaussian()))
    with pytest.raises(DDPMError, match="num_steps"):
        ColdSampler(DiffusionProcess(linear(T), Blur()), num_steps=T + 1)


def test_step_returns_the_processs_x0_hat() -> None:
    """``step`` returns (x_{t'}, x̂0) with x̂0 = ``process.x0_from_output`` = R(x_t, t) for x0-prediction."""
    process = DiffusionProcess(linear(T), Blur())
    x0_hat, x_t = _images(), _images(4, 1)
    out = ColdSampler(process).step(x0_hat, 5, 4, x_t, None)
    assert torch.equal(out.pred_original_sample, process.x0_from_output(x_t, 5, x0_hat))
    assert torch.equal(out.pred_original_sample, x0_hat)
    assert torch.allclose(
        out.prev_sample,
        x_t
        - process.degradation.degrade(x0_hat, torch.full((4,), 5), linear(T))
        + process.degradation.degrade(x0_hat, torch.full((4,), 4), linear(T)),
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [({"sigma_min": 0}, "sigma_min"), ({"sigma_max": 0.1}, "sigma_max"), ({"prior_noise": -1}, "prior_noise")],
)
def test_bad_config_is_one_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(DDPMError, match=match):
        Blur(**kwargs)


def test_no_host_sync_in_training_example() -> None:
    blur = Blur().to("meta")
    x0 = torch.empty(4, 1, 28, 28, device="meta")
    z, target = blur.training_example(x0, torch.ones(4, dtype=torch.long, device="meta"), linear(T).to("meta"))
    assert z.shape == x0.shape and z.device.type == "meta"
