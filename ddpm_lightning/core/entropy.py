"""Shannon entropy of pixel-value histograms, as DES (Diffusion with Entropy Scale) defines it.

A 256-bin histogram spanning the values' own min..max, normalised to probabilities,
H = −Σ p·log2 p with 0·log 0 = 0. Vectorised over rows and kept on the tensor's device.
"""

from __future__ import annotations

import torch
from torch import Tensor


def histogram_entropy(values: Tensor, bins: int = 256) -> Tensor:
    """Entropy in bits of each row of ``values`` (N, P) -> (N,).

    Bins are equal-width over [min, max] of the row (like ``torch.histc``: the max falls into the
    last bin). A constant row has one occupied bin and entropy 0.
    """
    values = values.detach().float()  # (N, P)
    lo = values.amin(dim=1, keepdim=True)  # (N, 1)
    hi = values.amax(dim=1, keepdim=True)
    width = (hi - lo).clamp_min(torch.finfo(values.dtype).tiny)
    idx = ((values - lo) / width * bins).long().clamp_(0, bins - 1)  # (N, P) bin of each value
    counts = torch.zeros(values.shape[0], bins, device=values.device)
    counts.scatter_add_(1, idx, torch.ones_like(values))  # (N, bins)
    p = counts / values.shape[1]
    plogp = torch.where(p > 0, p * torch.log2(p.clamp_min(1e-30)), torch.zeros_like(p))
    return -plogp.sum(dim=1)  # (N,)


def batch_entropy(x: Tensor, bins: int = 256) -> Tensor:
    """Entropy of all pixel values of a batch pooled together: (B, C, H, W) -> scalar."""
    return histogram_entropy(x.reshape(1, -1), bins)[0]


def image_entropy(x: Tensor, bins: int = 256) -> Tensor:
    """Entropy of each image's own pixel values: (B, C, H, W) -> (B,)."""
    return histogram_entropy(x.flatten(1), bins)
