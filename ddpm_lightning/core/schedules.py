"""Noise schedules β_1..β_T and the quantities derived from them (Ho et al. 2020, §2).

Index convention: every buffer has T + 1 entries and is indexed by the timestep t itself,
with t = 0 meaning "no noise" (β_0 = 0, ᾱ_0 = 1). Training draws t ~ U{1, ..., T}.
Maths in float64, buffers in float32: every coefficient a sampler or degradation multiplies by
(√ᾱ_t, √(1−ᾱ_t), β_t/√(1−ᾱ_t), 1/√α_t, σ_t) is computed in float64 and only then rounded, so it is
exact to float32 rounding at every t (1 − ᾱ_1 = β_1 ≈ 1e-4 loses ~4 digits if formed from a float32 ᾱ_1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ddpm_lightning.core.errors import DDPMError


def _check_T(T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise DDPMError(f"schedule.T must be an integer >= 2, got {T!r}")
    return T


def _check_range(beta_start: float, beta_end: float) -> None:
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
            raise DDPMError(f"schedule.{name} must lie in (0, 1), got {value!r}")
    if beta_start > beta_end:
        raise DDPMError(f"schedule.beta_start ({beta_start}) must not exceed schedule.beta_end ({beta_end})")


class NoiseSchedule(nn.Module):
    """Holds β_t, α_t = 1 − β_t and ᾱ_t = Π_{s≤t} α_s (Ho et al. 2020, eq. 4) for t = 0..T, and the
    coefficients derived from them, each computed in float64 then stored in float32:

    - ``sqrt_alpha_bars`` √ᾱ_t and ``sqrt_one_minus_alpha_bars`` √(1−ᾱ_t) (eq. 4);
    - ``eps_coefs`` β_t/√(1−ᾱ_t) and ``sqrt_recip_alphas`` 1/√α_t (Algorithm 2, line 4);
    - ``sqrt_betas`` √β_t and ``sqrt_posterior_variances`` √β̃_t, β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t (eq. 7),
      the two σ_t of Algorithm 2 (β̃_0 = 0).

    ``alpha_bars_host``: ᾱ_t as float64 host floats, for samplers that pair arbitrary (t, t_prev)
    (DDIM, DPM-Solver) and derive their coefficients per step in float64 without a device sync.
    """

    betas: Tensor
    alphas: Tensor
    alpha_bars: Tensor
    sqrt_alpha_bars: Tensor
    sqrt_one_minus_alpha_bars: Tensor
    eps_coefs: Tensor
    sqrt_recip_alphas: Tensor
    sqrt_betas: Tensor
    sqrt_posterior_variances: Tensor

    def __init__(self, betas: Tensor, name: str = "custom") -> None:
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64, device="cpu").flatten()
        _check_T(int(betas.numel()))
        if not bool(((betas > 0) & (betas < 1)).all()):
            bad = betas[~((betas > 0) & (betas < 1))][0].item()
            raise DDPMError(f"every β_t must lie in (0, 1), got {bad!r}")
        self.name = name
        betas = torch.cat([betas.new_zeros(1), betas])  # (T + 1,), β_0 = 0
        alpha_bars = torch.cumprod(1.0 - betas, dim=0)  # float64 product, ᾱ_0 = 1
        # Buffers are derived from the config, so they are not stored in checkpoints.
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas", (1.0 - betas).float(), persistent=False)
        self.register_buffer("alpha_bars", alpha_bars.float(), persistent=False)
        one_minus_ab = -torch.expm1(torch.cumsum(torch.log1p(-betas), dim=0))  # 1 − ᾱ_t, no cancellation near 0
        safe = one_minus_ab.clamp_min(torch.finfo(torch.float64).tiny)  # t = 0: 0/0 -> 0 below
        posterior = torch.cat([betas.new_zeros(1), one_minus_ab[:-1] / safe[1:] * betas[1:]])  # β̃_t, eq. 7
        coefs = {
            "sqrt_alpha_bars": alpha_bars.sqrt(),
            "sqrt_one_minus_alpha_bars": one_minus_ab.sqrt(),
            "eps_coefs": betas / safe.sqrt(),  # β_0 = 0 -> 0
            "sqrt_recip_alphas": (1.0 - betas).rsqrt(),
            "sqrt_betas": betas.sqrt(),
            "sqrt_posterior_variances": posterior.sqrt(),
        }
        for name, value in coefs.items():
            self.register_buffer(name, value.float(), persistent=False)
        self.alpha_bars_host: list[float] = alpha_bars.tolist()  # float64 host floats

    @property
    def T(self) -> int:
        return self.betas.numel() - 1

    def at(self, values: Tensor, t: Tensor) -> Tensor:
        """Gather ``values[t]`` and shape it for broadcasting over images: (B,) -> (B, 1, 1, 1)."""
        return values[t].view(-1, 1, 1, 1)

    def snr(self) -> Tensor:
        """Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) for t = 1..T."""
        ab = self.alpha_bars[1:].double()
        return (ab / (1.0 - ab)).float()

    def extra_repr(self) -> str:
        return f"name={self.name}, T={self.T}, β_1={self.betas[1].item():.3g}, β_T={self.betas[-1].item():.3g}"


def linear(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """β_t linear from β_1 = beta_start to β_T = beta_end (Ho et al. 2020, §4)."""
    _check_T(T)
    _check_range(beta_start, beta_end)
    return NoiseSchedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float64, device="cpu"), name="linear")


def geometric(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """β_t = β1 · (β2/β1)^(t/T) for t = 1..T."""
    _check_T(T)
    _check_range(beta_start, beta_end)
    t = torch.arange(1, T + 1, dtype=torch.float64, device="cpu")
    return NoiseSchedule(beta_start * (beta_end / beta_start) ** (t / T), name="geometric")


def custom(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """Cosine-shaped: β_t = (β2 − β1)/2 · (1 − cos(π t / T)) + β1 for t = 1..T."""
    _check_T(T)
    _check_range(beta_start, beta_end)
    t = torch.arange(1, T + 1, dtype=torch.float64, device="cpu")
    return NoiseSchedule((beta_end - beta_start) / 2 * (1 - torch.cos(math.pi * t / T)) + beta_start, name="custom")


def cosine(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """Nichol & Dhariwal 2021, eq. 17: ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2); β clipped."""
    _check_T(T)
    if not 0.0 < max_beta < 1.0:
        raise DDPMError(f"schedule.max_beta must lie in (0, 1), got {max_beta!r}")
    t = torch.arange(0, T + 1, dtype=torch.float64, device="cpu")
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bars = f / f[0]
    betas = (1 - alpha_bars[1:] / alpha_bars[:-1]).clamp(1e-8, max_beta)
    return NoiseSchedule(betas, name="cosine")
