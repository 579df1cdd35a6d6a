import pytest
import torch

from ddpm_lightning.core import schedules
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.samplers import DDIM, Ancestral
from tests.helpers.oracles import gaussian
from tests.helpers.oracles import sample_moments as _moments

T = 50


@pytest.fixture()
def net() -> CNN:
    torch.manual_seed(0)
    return CNN(channels=(4, 8, 4)).eval()


def run(sampler, net, seed=0, shape=(3, 1, 28, 28)):
    return sampler.sample(net, shape, torch.Generator().manual_seed(seed))


def test_ancestral_shape_and_determinism(net):
    s = schedules.linear(T=T)
    a = run(Ancestral(gaussian(s)), net)
    assert a.shape == (3, 1, 28, 28) and torch.isfinite(a).all()
    assert torch.equal(a, run(Ancestral(gaussian(s)), net))
    assert not torch.allclose(a, run(Ancestral(gaussian(s)), net, seed=1))


def test_ancestral_matches_algorithm_2_by_hand(net):
    """Re-implement Algorithm 2 literally with the same noise stream and compare."""
    s = schedules.linear(T=T)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 1, 28, 28, generator=g)
    with torch.no_grad():
        for t in range(T, 0, -1):
            beta, ab = s.betas[t], s.alpha_bars[t]
            eps = net(z, torch.full((2,), t))
            e = torch.randn(2, 1, 28, 28, generator=g) if t > 1 else 0
            z = (z - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt() + beta.sqrt() * e
    assert torch.allclose(run(Ancestral(gaussian(s)), net, seed=3, shape=(2, 1, 28, 28)), z, atol=1e-5)


def test_ddim_eta1_all_steps_equals_ancestral_with_posterior_variance(net):
    """Song et al. 2021: DDIM with η = 1 on every step is DDPM with σ_t² = β̃_t."""
    s = schedules.linear(T=T)
    ddim = run(DDIM(gaussian(s), num_steps=T, eta=1.0), net, seed=7)
    anc = run(Ancestral(gaussian(s), variance="beta_tilde"), net, seed=7)
    assert torch.allclose(ddim, anc, atol=1e-4)


def test_ddim_eta0_is_deterministic_and_uses_k_steps(net):
    s = schedules.linear(T=T)
    d = DDIM(gaussian(s), num_steps=10, eta=0.0)
    d.set_timesteps()
    assert d.timesteps[0] == T and d.timesteps[-1] == 1 and len(d.timesteps) == 10
    calls = []
    counting = lambda z, t: (calls.append(int(t[0])), net(z, t))[1]  # noqa: E731
    a = run(d, counting, seed=1)
    assert len(calls) == 10
    # η = 0 draws only z_T: the same z_T gives the same output whatever else the generator does
    assert torch.equal(a, run(DDIM(gaussian(s), num_steps=10), net, seed=1))


def test_noise_scale_scales_the_start_and_changes_samples(net):
    s = schedules.linear(T=T)
    zero = lambda z, t: torch.zeros_like(z)  # noqa: E731 - a network predicting no noise
    a = run(DDIM(gaussian(s, 1.0), num_steps=1), zero)
    b = run(DDIM(gaussian(s, 0.5), num_steps=1), zero)
    assert torch.allclose(b, 0.5 * a, atol=1e-6)
    assert not torch.allclose(run(Ancestral(gaussian(s, 0.5)), net), run(Ancestral(gaussian(s, 1.0)), net))


def test_bad_sampler_settings():
    s = schedules.linear(T=T)
    with pytest.raises(DDPMError, match="num_steps"):
        DDIM(gaussian(s), num_steps=0)
    with pytest.raises(DDPMError, match="num_steps"):
        DDIM(gaussian(s), num_steps=T + 1)
    with pytest.raises(DDPMError, match="variance"):
        Ancestral(gaussian(s), variance="nope")


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ancestral_recovers_gaussian_data_with_the_exact_noise_predictor(variance):
    """With the exact ε-predictor, ancestral sampling draws from the data distribution N(0.3, 0.5²)
    (20,000 values; a wrong coefficient in the update shifts the mean or the std)."""
    s = schedules.linear(T=1000)
    mean, std = _moments(Ancestral(gaussian(s), variance=variance), s)
    assert mean == pytest.approx(0.3, abs=0.015) and std == pytest.approx(0.5, rel=0.03)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_converges_to_the_data_distribution_as_steps_grow(eta):
    """DDIM with the exact ε-predictor: the mean is right at any k; the std is right with all T steps and
    shrinks with fewer (eq. 12 plugs in E[x0|z_t] and drops its variance: Var(z_prev) < Var(z_{t_prev})
    by Cauchy-Schwarz for Gaussian data), the error falling as k grows. This is the quality cost of
    few-step DDIM (benchmarks/README.md), measured here without a network."""
    s = schedules.linear(T=1000)
    stds = {}
    for k in (10, 50, 200, 1000):
        mean, stds[k] = _moments(DDIM(gaussian(s), num_steps=k, eta=eta), s)
        assert mean == pytest.approx(0.3, abs=0.015), k
    assert stds[1000] == pytest.approx(0.5, rel=0.03)
    assert stds[10] < stds[50] < stds[200] < 0.5 * 1.03
    assert stds[10] < 0.5 * 0.8  # 10 steps lose a fifth of the spread: not a rounding effect


@pytest.mark.parametrize("k", [2, 10, 50, 999, 1000])
def test_ddim_quadratic_spacing(k):
    """k distinct timesteps, T first and 1 last, gaps growing with t (denser at low noise than linear)."""
    s = schedules.linear(T=1000)
    quad, lin = DDIM(gaussian(s), num_steps=k, spacing="quadratic"), DDIM(gaussian(s), num_steps=k)
    quad.set_timesteps()
    lin.set_timesteps()
    ts = quad.timesteps
    assert len(ts) == k and ts[0] == 1000 and ts[-1] == 1 and all(a > b for a, b in zip(ts, ts[1:]))
    gaps = [a - b for a, b in zip(ts, ts[1:])]
    assert all(g1 >= g2 - 1 for g1, g2 in zip(gaps, gaps[1:]))  # non-increasing towards t = 1, up to rounding
    if k == 50:
        assert sum(t <= 100 for t in ts) > 2 * sum(t <= 100 for t in lin.timesteps)
    with pytest.raises(
        DDPMError, match=r"sampler.spacing must be one of \['linear', 'quadratic', 'logsnr'\], got 'log'"
    ):
        DDIM(gaussian(s), spacing="log")
