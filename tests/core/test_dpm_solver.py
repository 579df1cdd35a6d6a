"""DPM-Solver++(2M): the first-order step is DDIM, the second order converges faster (exact predictor)."""

import pytest
import torch

from ddpm_lightning.core import schedules
from ddpm_lightning.core.dpm_solver import DPMSolver
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.samplers import DDIM, spaced_timesteps
from tests.helpers.oracles import gaussian
from tests.helpers.oracles import sample_moments as _moments


@pytest.fixture()
def net() -> CNN:
    torch.manual_seed(0)
    return CNN(channels=(4, 8, 4)).eval()


def run(sampler, net, seed=0):
    return sampler.sample(net, (3, 1, 28, 28), torch.Generator().manual_seed(seed))  # built on gaussian(s, 0.7)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("spacing", ["linear", "logsnr"])
def test_first_order_is_ddim(net, eta, spacing):
    """Lu et al. 2022: the first-order DPM-Solver++ step is DDIM (Song et al. eq. 12), as an ODE and as an SDE."""
    s = schedules.linear(T=100)
    ddim = run(DDIM(gaussian(s, 0.7), num_steps=10, eta=eta, spacing=spacing), net, seed=4)
    dpm = run(DPMSolver(gaussian(s, 0.7), num_steps=10, eta=eta, order=1, spacing=spacing), net, seed=4)
    assert torch.allclose(dpm, ddim, atol=1e-4)
    assert not torch.allclose(
        run(DPMSolver(gaussian(s, 0.7), num_steps=10, eta=eta, order=2, spacing=spacing), net, seed=4), ddim, atol=1e-3
    )


def test_second_order_is_more_accurate_with_the_exact_predictor():
    """Gaussian data N(0.3, 0.5²) and its exact ε-predictor: at 10 steps the ODE's first-order solution
    (DDIM) loses a fifth of the spread, the second order much less; both converge with all T steps."""
    s = schedules.linear(T=1000)
    err = {}
    for order in (1, 2):
        mean, std = _moments(DPMSolver(gaussian(s), num_steps=10, eta=0.0, order=order), s)
        assert mean == pytest.approx(0.3, abs=0.015), order
        err[order] = abs(std - 0.5)
    assert err[2] < err[1] / 2
    mean, std = _moments(DPMSolver(gaussian(s), num_steps=1000, eta=0.0), s)
    assert mean == pytest.approx(0.3, abs=0.015) and std == pytest.approx(0.5, rel=0.03)


def test_sde_form_recovers_the_data_at_50_steps():
    s = schedules.linear(T=1000)
    mean, std = _moments(DPMSolver(gaussian(s), num_steps=50), s)  # the config default: SDE, 2nd order, logsnr
    assert mean == pytest.approx(0.3, abs=0.015) and std == pytest.approx(0.5, rel=0.03)


def test_sde_draws_noise_and_ode_does_not(net):
    s = schedules.linear(T=100)
    assert not torch.allclose(
        run(DPMSolver(gaussian(s, 0.7), num_steps=10), net, seed=0),
        run(DPMSolver(gaussian(s, 0.7), num_steps=10), net, seed=1),
    )
    calls = []
    counting = lambda z, t: (calls.append(int(t[0])), net(z, t))[1]  # noqa: E731
    run(DPMSolver(gaussian(s, 0.7), num_steps=10, eta=0.0), counting)
    assert len(calls) == 10 and calls[0] == 100 and calls[-1] == 1


@pytest.mark.parametrize("k", [2, 10, 50, 999, 1000])
def test_logsnr_spacing(k):
    """k distinct timesteps, T first and 1 last, evenly spaced in λ = log(√ᾱ/√(1−ᾱ)) up to rounding."""
    s = schedules.linear(T=1000)
    ts = spaced_timesteps(s, k, "logsnr")
    assert len(ts) == k and ts[0] == 1000 and ts[-1] == 1 and all(a > b for a, b in zip(ts, ts[1:]))
    if k == 50:
        ab = s.alpha_bars[torch.tensor(ts)].double()
        gaps = (0.5 * (ab.log() - (1 - ab).log())).diff()
        assert gaps.min() > 0.5 * gaps.mean() and gaps.max() < 2 * gaps.mean()
        assert sum(t <= 100 for t in ts) > 3 * sum(t <= 100 for t in spaced_timesteps(s, k, "linear"))


def test_bad_settings():
    s = schedules.linear(T=20)
    with pytest.raises(DDPMError, match=r"sampler.order must be one of \[1, 2\], got 3"):
        DPMSolver(gaussian(s), order=3, num_steps=5)
    with pytest.raises(DDPMError, match=r"sampler.num_steps must be an integer in \[1, T=20\], got 50"):
        DPMSolver(gaussian(s))
    with pytest.raises(
        DDPMError, match=r"sampler.spacing must be one of \['linear', 'quadratic', 'logsnr'\], got 'log'"
    ):
        DPMSolver(gaussian(s), num_steps=5, spacing="log")
    with pytest.raises(DDPMError, match="sampler.eta must be >= 0"):
        DPMSolver(gaussian(s), num_steps=5, eta=-1)
