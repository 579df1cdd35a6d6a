"""Pieces shared by the noise-prediction networks: channel validation and the time embedding."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ddpm_lightning.core.errors import DDPMError


def validate_channels(channels: Sequence[int]) -> tuple[int, ...]:
    """Return ``channels`` as a tuple, or raise one clear line for an empty or non-positive list."""
    values = list(channels) if channels is not None else []
    if not values or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in values):
        raise DDPMError(f"channels must be a non-empty list of positive integers, got {values!r}")
    return tuple(values)


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style sinusoidal encoding of timesteps (Vaswani et al. 2017; Ho et al. 2020, App. B).

    t: (B,) integer or float timesteps -> (B, dim).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, 2·half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal encoding followed by a small MLP: (B,) -> (B, out_dim)."""

    def __init__(self, out_dim: int, dim: int = 32, hidden: int = 128, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, out_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim))
