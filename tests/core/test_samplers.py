import pytest
import torch

from ddpm_lightning.core import schedules
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.samplers import DDIM, Ancestral

T = 50


@pytest.fixture()
def net() -> CNN:
    torch.manual_seed(0)
    return CNN(channels=(4, 8, 4)).eval()


def run(sampler, net, seed=0, scale=1.0, shape=(3, 1, 28, 28)):
    return sampler.sample(net, shape, torch.Generator().manual_seed(seed), scale)


def test_ancestral_shape_and_determinism(net):
    s = schedules.linear(T=T)
    a = run(Ancestral(s), net)
    assert a.shape == (3, 1, 28, 28) and torch.isfinite(a).all()
    assert torch.equal(a, run(Ancestral(s), net))
    assert not torch.allclose(a, run(Ancestral(s), net, seed=1))


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
    assert torch.allclose(run(Ancestral(s), net, seed=3, shape=(2, 1, 28, 28)), z, atol=1e-5)


def test_ddim_eta1_all_steps_equals_ancestral_with_posterior_variance(net):
    """Song et al. 2021: DDIM with η = 1 on every step is DDPM with σ_t² = β̃_t."""
    s = schedules.linear(T=T)
    ddim = run(DDIM(s, num_steps=T, eta=1.0), net, seed=7)
    anc = run(Ancestral(s, variance="beta_tilde"), net, seed=7)
    assert torch.allclose(ddim, anc, atol=1e-4)


def test_ddim_eta0_is_deterministic_and_uses_k_steps(net):
    s = schedules.linear(T=T)
    d = DDIM(s, num_steps=10, eta=0.0)
    d.set_timesteps()
    assert d.timesteps[0] == T and d.timesteps[-1] == 1 and len(d.timesteps) == 10
    calls = []
    counting = lambda z, t: (calls.append(int(t[0])), net(z, t))[1]  # noqa: E731
    a = run(d, counting, seed=1)
    assert len(calls) == 10
    # η = 0 draws only z_T: the same z_T gives the same output whatever else the generator does
    assert torch.equal(a, run(DDIM(s, num_steps=10), net, seed=1))


def test_noise_scale_scales_the_start_and_changes_samples(net):
    s = schedules.linear(T=T)
    zero = lambda z, t: torch.zeros_like(z)  # noqa: E731 - a network predicting no noise
    a = run(DDIM(s, num_steps=1), zero, scale=1.0)
    b = run(DDIM(s, num_steps=1), zero, scale=0.5)
    assert torch.allclose(b, 0.5 * a, atol=1e-6)
    assert not torch.allclose(run(Ancestral(s), net, scale=0.5), run(Ancestral(s), net, scale=1.0))


def test_bad_sampler_settings():
    s = schedules.linear(T=T)
    with pytest.raises(DDPMError, match="num_steps"):
        DDIM(s, num_steps=0)
    with pytest.raises(DDPMError, match="num_steps"):
        DDIM(s, num_steps=T + 1)
    with pytest.raises(DDPMError, match="variance"):
        Ancestral(s, variance="nope")
