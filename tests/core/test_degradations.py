"""Tests for the Gaussian and DES (EntropyScaled) degradations and how the samplers use their scale."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from ddpm_lightning.core.degradations import EntropyScaled, Gaussian
from ddpm_lightning.core.entropy import batch_entropy, image_entropy
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import DDIM, Ancestral
from ddpm_lightning.core.schedules import linear

LEVELS = torch.arange(256, dtype=torch.float32) * 2 / 255 - 1


def _mnist_like(n: int, seed: int = 0, background: float = 0.8) -> Tensor:
    """(n, 1, 28, 28) on the 256 MNIST grey levels: a ``background`` fraction at −1, a tenth at +1, the
    rest spread over all levels. H ≈ 1.7 bits for 0.8 (real MNIST batches: ≈ 1.9), so s ≈ 0.85, well below 1."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 1, 28, 28, generator=g)
    idx = torch.randint(0, 256, (n, 1, 28, 28), generator=g)
    idx = torch.where(u < background, 0, torch.where(u < background + 0.1, 255, idx))
    return LEVELS[idx]


def _zero_model(z: Tensor, t: Tensor) -> Tensor:
    return torch.zeros_like(z)


# ---- the scale s --------------------------------------------------------------------------------
def test_scale_is_sigmoid_of_entropy_and_in_open_unit_interval() -> None:
    des = EntropyScaled()
    batches = [_mnist_like(8), torch.full((4, 1, 28, 28), -1.0), LEVELS.view(1, 1, 16, 16).repeat(2, 1, 1, 1)]
    for x in batches:
        s = des.scale(x)
        assert s.shape == ()
        assert torch.allclose(s, torch.sigmoid(batch_entropy(x)))
        assert 0.0 < s.item() < 1.0
    assert des.scale(batches[1]).item() == pytest.approx(0.5)  # H = 0
    assert des.scale(batches[2]).item() == pytest.approx(torch.sigmoid(torch.tensor(8.0)).item())  # H = 8


def test_temperature_and_offset() -> None:
    x = _mnist_like(4)
    h = batch_entropy(x)
    s = EntropyScaled(temperature=2.0, offset=1.5).scale(x)
    assert torch.allclose(s, torch.sigmoid((h - 1.5) / 2.0))


def test_per_image_scale_shape_and_values() -> None:
    x = torch.cat([_mnist_like(3, background=0.3), _mnist_like(3, seed=1, background=0.85)])  # varied entropies
    s = EntropyScaled(per_image=True).scale(x)
    assert s.shape == (6, 1, 1, 1)
    assert torch.allclose(s.flatten(), torch.sigmoid(image_entropy(x)))
    assert s.flatten().unique().numel() > 1


# ---- the forward process ------------------------------------------------------------------------
def _draws(deg: EntropyScaled | Gaussian, x0: Tensor, t: int, n: int) -> tuple[Tensor, Tensor]:
    """n draws of (z_t, target) for a fixed x0 and t: (n, B, C, H, W) each."""
    sched = linear(100)
    g = torch.Generator().manual_seed(0)
    tt = torch.full((x0.shape[0],), t, dtype=torch.long)
    zs, targets = zip(*(deg.training_example(x0, tt, sched, g) for _ in range(n)))
    return torch.stack(zs), torch.stack(targets)


@pytest.mark.parametrize("t", [5, 50, 100])
def test_des_forward_marginal_variance_is_s2_one_minus_alphabar(t: int) -> None:
    x0 = _mnist_like(16)
    des = EntropyScaled()
    s = torch.sigmoid(batch_entropy(x0)).item()
    assert s < 0.9  # so that s², s and 1 are told apart below
    ab = linear(100).alpha_bars[t].item()
    z, target = _draws(des, x0, t, 200)  # 200 × 16 × 784 ≈ 2.5 M draws
    resid = z - ab**0.5 * x0  # the noise part √(1−ᾱ_t)·s·ε
    assert resid.mean().item() == pytest.approx(0.0, abs=3e-3)
    assert resid.var().item() == pytest.approx(s**2 * (1 - ab), rel=0.01)
    assert torch.allclose(resid, (1 - ab) ** 0.5 * target, atol=1e-5)  # target = the noise actually added
    assert target.var().item() == pytest.approx(s**2, rel=0.01)


def test_des_image_forward_variance_per_image() -> None:
    x0 = torch.cat([_mnist_like(2, background=0.0), _mnist_like(2, seed=1, background=0.88)])  # H ≈ 7.5 vs 1.2 bits
    s = torch.sigmoid(image_entropy(x0))  # (4,)
    ab = linear(100).alpha_bars[60].item()
    z, _ = _draws(EntropyScaled(per_image=True), x0, 60, 400)
    var = (z - ab**0.5 * x0).transpose(0, 1).reshape(4, -1).var(dim=1)  # per image
    assert torch.allclose(var, s**2 * (1 - ab), rtol=0.015)
    assert (s.max() - s.min()).item() > 0.2  # the images really have different scales


def test_gaussian_forward_variance_and_target() -> None:
    x0 = _mnist_like(8)
    ab = linear(100).alpha_bars[30].item()
    z, target = _draws(Gaussian(), x0, 30, 200)
    assert (z - ab**0.5 * x0).var().item() == pytest.approx(1 - ab, rel=0.01)
    assert target.var().item() == pytest.approx(1.0, rel=0.01)
    assert Gaussian().prediction == "eps" and Gaussian().noise_scale == 1.0


def test_batch_and_per_image_agree_on_one_image() -> None:
    x0 = _mnist_like(1)
    t = torch.tensor([37])
    sched = linear(100)
    batch, image = EntropyScaled(), EntropyScaled(per_image=True)
    eb = batch.training_example(x0, t, sched, torch.Generator().manual_seed(5))
    ei = image.training_example(x0, t, sched, torch.Generator().manual_seed(5))
    (zb, tb), (zi, ti) = eb, ei
    assert torch.allclose(zb, zi) and torch.allclose(tb, ti)
    assert torch.allclose(eb.stats["entropy"], ei.stats["entropy"])
    assert torch.allclose(eb.stats["scale"], ei.stats["scale"])
    assert torch.allclose(batch.running_scale, image.running_scale)


# ---- the scale recorded for sampling ------------------------------------------------------------
def test_running_scale_is_the_mean_of_training_scales_and_is_checkpointed() -> None:
    des = EntropyScaled()
    sched = linear(20)
    scales = []
    for i, background in enumerate((0.2, 0.5, 0.85)):
        x0 = _mnist_like(4, seed=i, background=background)
        des.training_example(x0, torch.full((4,), 3), sched)
        scales.append(torch.sigmoid(batch_entropy(x0)).item())
    assert des.num_batches.item() == 3
    assert des.noise_scale == pytest.approx(sum(scales) / 3, abs=1e-6)
    des.eval()  # validation batches do not move it
    example = des.training_example(torch.full((4, 1, 28, 28), -1.0), torch.full((4,), 3), sched)
    assert des.noise_scale == pytest.approx(sum(scales) / 3, abs=1e-6)
    assert example.stats["scale"].item() == pytest.approx(0.5)  # but are reported
    state = des.state_dict()
    assert set(state) == {"running_scale", "num_batches"}
    fresh = EntropyScaled()
    assert fresh.noise_scale == 1.0
    fresh.load_state_dict(state)
    assert fresh.noise_scale == pytest.approx(sum(scales) / 3, abs=1e-6)
    assert EntropyScaled(sample_scale=0.7).noise_scale == 0.7


def test_statistics_stay_on_device_without_host_sync() -> None:
    """On the meta device any .item(), float() or bool() of a tensor raises: none happens per step."""
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.empty(3, device="meta").sum().item()
    for des in (EntropyScaled(), EntropyScaled(per_image=True)):
        des = des.to("meta")
        x0 = torch.empty(4, 1, 28, 28, device="meta")
        example = des.training_example(x0, torch.ones(4, dtype=torch.long, device="meta"), linear(20).to("meta"))
        z, target = example
        assert z.shape == x0.shape and target.device.type == "meta"
        assert example.stats["scale"].device.type == "meta"


# ---- samplers use the recorded scale ------------------------------------------------------------
@pytest.mark.parametrize("factory", [Ancestral, lambda s: Ancestral(s, "beta_tilde"), lambda s: DDIM(s, 5, eta=1.0)])
def test_sampler_scales_z_T_and_every_injected_noise(factory) -> None:
    """With a zero network every update is linear in (z_T, noises), so the result is exactly s × the s = 1 result."""
    des = EntropyScaled()
    sampler = factory(DiffusionProcess(linear(20), des))
    out = {}
    for s in (1.0, 0.6):
        des.running_scale.fill_(s)
        out[s] = sampler.sample(_zero_model, (3, 1, 8, 8), torch.Generator().manual_seed(0))
    assert not torch.allclose(out[1.0], out[0.6])  # changing the recorded scale changes the samples
    assert torch.allclose(out[0.6], 0.6 * out[1.0], atol=1e-5)


def test_sampler_with_degradation_prior_is_unchanged() -> None:
    """The recorded scale (read through the process's ``noise_scale`` and ``prior``) gives exactly the
    samples of the same scale set explicitly (``sample_scale``)."""
    model = lambda z, t: 0.1 * z  # noqa: E731
    des = EntropyScaled()
    des.running_scale.fill_(0.8)
    recorded = DiffusionProcess(linear(20), des)
    explicit = DiffusionProcess(linear(20), EntropyScaled(sample_scale=des.noise_scale))
    assert recorded.noise_scale == explicit.noise_scale == des.noise_scale
    for factory in (Ancestral, lambda p: DDIM(p, 4, eta=0.5)):
        a = factory(explicit).sample(model, (2, 1, 8, 8), torch.Generator().manual_seed(1))
        b = factory(recorded).sample(model, (2, 1, 8, 8), torch.Generator().manual_seed(1), "cpu")
        assert torch.equal(a, b)


# ---- config errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"bins": 1}, "bins"),
        ({"bins": 2.5}, "bins"),
        ({"sample_scale": 0}, "sample_scale"),
    ],
)
def test_bad_config_is_one_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(DDPMError, match=match):
        EntropyScaled(**kwargs)
