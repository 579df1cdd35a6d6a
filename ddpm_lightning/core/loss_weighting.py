"""Per-timestep weights of the training loss (pure torch; no Lightning/Hydra imports).

The DDPM loss (Ho et al. 2020, eq. 14) weights every t alike: L = E_t ‖ĝ(z_t, t) − target‖². A weighting
w(t) turns it into L = E_t w(t)·‖ĝ(z_t, t) − target‖², to spend the network's capacity where samples
need it. ``None`` in the module means the uniform weighting of eq. 14.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.schedules import NoiseSchedule

__all__ = ["MinSNR"]


class MinSNR:
    """Min-SNR-γ weighting (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", eq. 5
    and its ε form): the loss of step t is weighted by min(SNR_t, γ) in x0 terms, SNR_t = ᾱ_t / (1 − ᾱ_t).

    For ε-prediction ‖x0 − x̂0‖² = ‖ε − ε̂‖² / SNR_t, so the weight of the ε-loss is min(SNR_t, γ) / SNR_t:
    1 at the noisy steps (SNR_t ≤ γ), γ / SNR_t < 1 at the nearly clean ones, which a uniform ε-loss
    over-weights in x0 terms and which decide little of a sample's shape. For x0-prediction it is min(SNR_t, γ).
    """

    def __init__(self, gamma: float = 5.0) -> None:
        if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or not gamma > 0:
            raise DDPMError(f"min-SNR gamma must be a positive number, got {gamma!r}")
        self.gamma = float(gamma)

    def __call__(self, schedule: NoiseSchedule, t: Tensor, prediction: Literal["eps", "x0"]) -> Tensor:
        """The weights (B,) of steps t (B,) on ``schedule``, for a network predicting ``prediction``."""
        ab = schedule.alpha_bars[t].double()  # (B,)
        snr = ab / (1.0 - ab)  # (B,), t ≥ 1 so 1 − ᾱ_t > 0
        clipped = torch.clamp(snr, max=self.gamma)  # min(SNR_t, γ)
        weights = clipped / snr if prediction == "eps" else clipped
        return weights.float()

    def __repr__(self) -> str:
        return f"MinSNR(gamma={self.gamma:g})"
