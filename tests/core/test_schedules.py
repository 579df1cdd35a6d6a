import math

import pytest
import torch

from ddpm_lightning.core import schedules
from ddpm_lightning.core.errors import DDPMError

B1, B2, T = 1e-4, 0.02, 1000


@pytest.mark.parametrize(
    "make, formula",
    [
        (schedules.linear, lambda t: B1 + (B2 - B1) * (t - 1) / (T - 1)),
        (schedules.geometric, lambda t: B1 * (B2 / B1) ** (t / T)),
        (schedules.custom, lambda t: (B2 - B1) / 2 * (1 - math.cos(math.pi * t / T)) + B1),
    ],
)
def test_beta_formula_at_hand_computed_points(make, formula):
    s = make(T=T, beta_start=B1, beta_end=B2)
    for t in (1, 2, 250, 500, 999, 1000):
        assert s.betas[t].item() == pytest.approx(formula(t), rel=1e-6), t
    assert s.betas[0].item() == 0.0 and s.alpha_bars[0].item() == 1.0


def test_hand_values():
    # geometric at t = T/2: β1·√(β2/β1) = √(β1β2); custom at t = T/2: (β1 + β2)/2
    assert schedules.geometric().betas[500].item() == pytest.approx(math.sqrt(B1 * B2), rel=1e-6)
    assert schedules.custom().betas[500].item() == pytest.approx((B1 + B2) / 2, rel=1e-6)
    lin = schedules.linear(T=4, beta_start=0.1, beta_end=0.4)
    assert lin.betas.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert lin.alpha_bars.tolist() == pytest.approx([1.0, 0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7, 0.9 * 0.8 * 0.7 * 0.6])


@pytest.mark.parametrize("make", [schedules.linear, schedules.geometric, schedules.custom, schedules.cosine])
def test_ranges_and_monotonicity(make):
    s = make(T=T)
    betas, ab = s.betas[1:], s.alpha_bars
    assert ((betas > 0) & (betas < 1)).all()
    assert (ab[1:] < ab[:-1]).all(), "ᾱ_t must decrease strictly"
    assert 0 < ab[-1] < 0.05  # geometric keeps the most signal: ᾱ_T ≈ 0.023
    assert s.T == T and s.betas.dtype == torch.float32
    assert torch.isfinite(s.snr()).all() and (s.snr()[1:] < s.snr()[:-1]).all()


def test_alpha_bar_computed_in_float64():
    s = schedules.linear()
    ref = torch.cumprod(1 - torch.linspace(B1, B2, T, dtype=torch.float64), 0)
    assert torch.allclose(s.alpha_bars[1:].double(), ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(beta_start=0.0), "beta_start"),
        (dict(beta_end=1.0), "beta_end"),
        (dict(beta_start=-0.1), "beta_start"),
        (dict(beta_start=0.02, beta_end=1e-4), "must not exceed"),
        (dict(T=1), "T must be an integer >= 2"),
    ],
)
@pytest.mark.parametrize("make", [schedules.linear, schedules.geometric, schedules.custom])
def test_bad_values_raise_one_line(make, kwargs, needle):
    with pytest.raises(DDPMError) as info:
        make(**kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)
