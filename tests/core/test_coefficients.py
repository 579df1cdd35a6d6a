"""Sampler and degradation coefficients: each step equals a float64 computation to float32 rounding."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.dpm_solver import DPMSolver
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import DDIM, Ancestral
from ddpm_lightning.core.schedules import linear

T = 1000  # the study's schedule: β_1 = 1e-4, so 1 − ᾱ_1 is where float32 loses digits
TS = [1, 2, T // 2, T]
TOL = 4 * torch.finfo(torch.float32).eps  # a few float32 roundings, relative to the result's scale


def reference() -> tuple[torch.Tensor, torch.Tensor]:
    """β_t and ᾱ_t in float64, t = 0..T, from the formulas (Ho et al. 2020, eq. 4)."""
    betas = torch.cat([torch.zeros(1, dtype=torch.float64), torch.linspace(1e-4, 0.02, T, dtype=torch.float64)])
    return betas, torch.cumprod(1 - betas, 0)


def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(4, 1, 28, 28, generator=g) for _ in range(3))  # z, ĝ, e: (B, C, H, W)


def close(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert out.dtype == torch.float32
    return float((out.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("t", TS)
def test_schedule_coefficients_are_rounded_float64(t: int) -> None:
    s, (b, ab) = linear(T), reference()
    expected = {
        "sqrt_alpha_bars": ab[t].sqrt(),
        "sqrt_one_minus_alpha_bars": (1 - ab[t]).sqrt(),
        "eps_coefs": b[t] / (1 - ab[t]).sqrt(),
        "sqrt_recip_alphas": 1 / (1 - b[t]).sqrt(),
        "sqrt_betas": b[t].sqrt(),
        "sqrt_posterior_variances": ((1 - ab[t - 1]) / (1 - ab[t]) * b[t]).sqrt(),
    }
    for name, value in expected.items():
        assert getattr(s, name)[t].item() == pytest.approx(value.item(), rel=1e-7), name
    assert s.alpha_bars_host[t] == pytest.approx(ab[t].item(), rel=1e-15)


@pytest.mark.parametrize("t", TS)
def test_every_step_matches_float64(t: int) -> None:
    s, (b, ab) = linear(T), reference()
    p = DiffusionProcess(s, Gaussian())
    z, g, e = inputs()
    z64, g64, e64 = z.double(), g.double(), e.double()
    # Ancestral, Ho et al. Alg. 2: both σ_t² = β_t and β̃_t
    mean = (z64 - b[t] / (1 - ab[t]).sqrt() * g64) / (1 - b[t]).sqrt()
    for variance, var in (("beta", b[t]), ("beta_tilde", (1 - ab[t - 1]) / (1 - ab[t]) * b[t])):
        ref = mean + var.sqrt() * e64 if t > 1 else mean
        assert close(Ancestral(p, variance).step(g, t, t - 1, z, e if t > 1 else None).prev_sample, ref) < TOL, (
            variance,
            t,
        )
    # DDIM, Song et al. eq. 12, to t_prev = t − 1 and to 0, η = 0 and 1
    for t_prev in sorted({t - 1, 0}):
        a, ap = ab[t], ab[t_prev]
        x0 = (z64 - (1 - a).sqrt() * g64) / a.sqrt()
        for eta in (0.0, 1.0):
            sigma = eta * ((1 - ap) / (1 - a)).sqrt() * (1 - a / ap).sqrt()
            ref = ap.sqrt() * x0 + (1 - ap - sigma**2).clamp_min(0).sqrt() * g64 + sigma * e64
            out = DDIM(p, num_steps=10, eta=eta).step(g, t, t_prev, z, e).prev_sample
            assert close(out, ref) < TOL, ("ddim", eta, t, t_prev)
    # DPM-Solver++ first-order step (Lu et al. 2022), η = 1
    if t > 1:
        solver = DPMSolver(p, num_steps=10, eta=1.0, order=1)
        solver.set_timesteps()
        a, sg, ap, sp = ab[t].sqrt(), (1 - ab[t]).sqrt(), ab[t - 1].sqrt(), (1 - ab[t - 1]).sqrt()
        h = math.log(ap / sp) - math.log(a / sg)
        d = (z64 - sg * g64) / a
        ref = sp / sg * math.exp(-h) * z64 - ap * math.expm1(-2 * h) * d + sp * math.sqrt(-math.expm1(-2 * h)) * e64
        assert close(solver.step(g, t, t - 1, z, e).prev_sample, ref) < TOL, ("dpm", t)
    # the forward process, eq. 4
    tt = torch.full((4,), t)
    ref = ab[t].sqrt() * z64 + (1 - ab[t]).sqrt() * e64
    assert close(Gaussian().corrupt(z, tt, e, s), ref) < TOL


@pytest.mark.parametrize("t", TS)
def test_every_step_returns_the_processs_x0_hat(t: int) -> None:
    """``step`` returns (z_prev, x̂0) with x̂0 = ``process.x0_from_output`` (one formula for every sampler),
    and that x̂0 is eq. 4 solved for x0 in float64, to float32 rounding (relative to the result's scale)."""
    s, (_, ab) = linear(T), reference()
    p = DiffusionProcess(s, Gaussian())
    z, g, e = inputs()
    x0_hat = p.x0_from_output(z, t, g)  # (B, C, H, W)
    ref = (z.double() - (1 - ab[t]).sqrt() * g.double()) / ab[t].sqrt()
    assert close(x0_hat, ref) < TOL
    assert torch.equal(p.x0_from_output(z, torch.full((4,), t), g), x0_hat)  # t as an int or a (B,) tensor
    dpm = DPMSolver(p, num_steps=10, eta=1.0)
    dpm.set_timesteps()
    samplers = [Ancestral(p), Ancestral(p, "beta_tilde"), DDIM(p, num_steps=10), DDIM(p, num_steps=10, eta=1.0), dpm]
    for sampler in samplers:
        for t_prev in sorted({t - 1, 0}):
            out = sampler.step(g, t, t_prev, z, e if sampler.needs_noise(t_prev) else None)
            assert out.prev_sample.shape == z.shape
            assert torch.equal(out.pred_original_sample, x0_hat), (sampler.name, t, t_prev)
