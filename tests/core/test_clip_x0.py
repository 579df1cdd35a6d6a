"""sampler.clip_x0: x̂0 clipped to [−1, 1] in every step (Ho et al. 2020's code, ``clip_denoised``).

Off (the default) the samplers are unchanged; on, every chain ends in [−1, 1] even for a network far off
the data, and a step whose x̂0 is already in range equals the unclipped step (Ancestral: the posterior mean
of eq. 7 equals Algorithm 2's line 4).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from ddpm_lightning.core import schedules
from ddpm_lightning.core.dpm_solver import DPMSolver
from ddpm_lightning.core.samplers import DDIM, Ancestral
from tests.helpers.oracles import gaussian

T = 50
SHAPE = (4, 1, 8, 8)  # (B, C, H, W)


def wild(z: Tensor, t: Tensor) -> Tensor:
    """A network far off the data: its x̂0 overshoots [−1, 1] by a lot at every step."""
    return -3.0 * z + 2.0


def sample(sampler, model=wild, seed: int = 0) -> Tensor:
    return sampler.sample(model, SHAPE, torch.Generator().manual_seed(seed))


SAMPLERS = {
    "ancestral": lambda p, **kw: Ancestral(p, **kw),
    "ancestral_beta_tilde": lambda p, **kw: Ancestral(p, variance="beta_tilde", **kw),
    "ddim": lambda p, **kw: DDIM(p, num_steps=10, **kw),
    "ddim_eta1": lambda p, **kw: DDIM(p, num_steps=10, eta=1.0, **kw),
    "dpm_solver": lambda p, **kw: DPMSolver(p, num_steps=10, **kw),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_clip_keeps_samples_in_range_and_off_is_the_default(name):
    process = gaussian(schedules.cosine(T=T))
    default = sample(SAMPLERS[name](process))
    off = sample(SAMPLERS[name](process, clip_x0=False))
    on = sample(SAMPLERS[name](process, clip_x0=True))
    assert torch.equal(default, off)  # the default path is the unclipped one
    assert default.abs().max() > 1.5  # without clipping this network leaves the data range
    assert on.abs().max() <= 1.0 + 1e-6 and torch.isfinite(on).all()


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_a_step_with_x0_in_range_is_unchanged_by_clipping(name):
    """x̂0 inside [−1, 1]: the clipped update (eq. 7's posterior mean for Ancestral, eq. 12 as written for
    DDIM) equals the default one to float32 rounding."""
    process = gaussian(schedules.linear(T=T))
    g = torch.Generator().manual_seed(1)
    eps = torch.randn(SHAPE, generator=g)
    for t, t_prev in ((T, T - 1), (T // 2, T // 2 - 1), (1, 0)):
        x0 = 0.9 * torch.tanh(torch.randn(SHAPE, generator=g))  # in range
        s = process.schedule
        z_t = s.sqrt_alpha_bars[t] * x0 + s.sqrt_one_minus_alpha_bars[t] * eps  # so that x̂0 = x0
        noise = torch.randn(SHAPE, generator=g) if t_prev > 0 else None
        steps = [SAMPLERS[name](process, clip_x0=c) for c in (False, True)]
        for sm in steps:
            sm.set_timesteps()
        a, b = (sm.step(eps, t, t_prev, z_t, noise) for sm in steps)
        assert torch.allclose(a.pred_original_sample, b.pred_original_sample, atol=1e-5)
        assert torch.allclose(a.prev_sample, b.prev_sample, atol=1e-4), (t, (a.prev_sample - b.prev_sample).abs().max())
