"""Exact predictors for Gaussian data: what a perfectly trained network would output, to test samplers against."""

from __future__ import annotations

import torch

from ddpm_lightning.core.degradations import EntropyScaled, Gaussian
from ddpm_lightning.core.process import DiffusionProcess


def gaussian(schedule, scale: float = 1.0) -> DiffusionProcess:
    """The Gaussian process on ``schedule``; noise scale s = ``scale`` (DES with a fixed sample_scale)."""
    return DiffusionProcess(schedule, Gaussian() if scale == 1.0 else EntropyScaled(sample_scale=scale))


def gaussian_data_oracle(schedule, mean: float, std: float):
    """The exact ε-predictor E[ε | z_t] for data x0 ~ N(mean, std²) (per pixel):
    z_t = √ᾱ x0 + √(1−ᾱ) ε is Gaussian, so E[ε | z_t] = √(1−ᾱ)(z_t − √ᾱ·mean) / (ᾱ·std² + 1 − ᾱ)."""

    def model(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = schedule.alpha_bars[t].view(-1, *([1] * (z.dim() - 1))).to(torch.float64)
        return ((1 - ab).sqrt() * (z - ab.sqrt() * mean) / (ab * std**2 + 1 - ab)).to(z.dtype)

    return model


def sample_moments(sampler, schedule) -> tuple[float, float]:
    """Mean and std of 5000 samples (1×2×2) drawn with the exact predictor for x0 ~ N(0.3, 0.5²)."""
    x = sampler.sample(gaussian_data_oracle(schedule, 0.3, 0.5), (5000, 1, 2, 2), torch.Generator().manual_seed(0))
    return x.mean().item(), x.std().item()
