"""Time-conditioned U-Net noise predictor (pure torch; no Lightning/Hydra imports)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddpm_lightning.core.networks.common import sinusoidal_embedding, validate_channels

__all__ = ["UNet"]

# A feature map is halved only while its short side is at least this big: 28 -> 14 -> 7 -> 7 ...
_MIN_DOWNSAMPLE_SIZE = 14


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with gcd(groups, ch) groups, so any width is valid."""
    return nn.GroupNorm(math.gcd(groups, ch), ch)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv3x3 twice with a residual shortcut; time enters as scale/shift after norm2.

    Scale-shift (not a plain added bias) keeps the time signal alive even when GroupNorm has one
    channel per group, which would otherwise cancel a per-channel bias.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = _norm(out_ch, groups)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        scale, shift = self.time_proj(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift  # (B, out, H, W)
        h = self.conv2(F.silu(h))  # (B, out, H, W)
        return h + self.shortcut(x)


class _Down(nn.Module):
    """3x3 conv; stride 2 while the short side is >= _MIN_DOWNSAMPLE_SIZE, else stride 1."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        stride = 2 if min(x.shape[-2:]) >= _MIN_DOWNSAMPLE_SIZE else 1
        return F.conv2d(x, self.conv.weight, self.conv.bias, stride=stride, padding=1)  # (B, C, H', W')


class _Up(nn.Module):
    """Nearest resize to the skip's exact size (no-op if equal), then a 3x3 conv."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor, size: torch.Size) -> Tensor:
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="nearest")  # (B, C, Hs, Ws)
        return self.conv(x)


class UNet(nn.Module):
    """U-Net predicting the noise ``eps`` from ``(x_t, t)``.

    ``channels`` is the same capacity tuple the small CNN uses (e.g. small ``(16, 32, 32, 16)``,
    large ``(64, 128, 256, 128, 64)``), read as widths going down to the bottleneck and back up:

    * ``k``/``last`` = first/last index of ``max(channels)``. Encoder levels are ``channels[:k]`` (one
      residual block each, its output kept as a skip, then a down-sampling); the bottleneck is
      ``channels[k:last + 1]`` (one residual block per entry at the lowest resolution).
    * The decoder has exactly ``k`` up-levels, one per skip, deepest first. Up-level ``m`` has width
      ``channels[last + 1 + m]`` when given, otherwise the mirrored encoder width ``channels[k - 1 - m]``.
      Decoder widths beyond ``k`` become extra full-resolution residual blocks before the output conv.
    * Each down-sampling halves the feature map only while its short side is >= 14
      (28 -> 14 -> 7, then 7 stays; 32 -> 16 -> 8), so any tuple length works for any input size.

    Examples: ``(16, 32, 32, 16)`` -> 16@28, 32@14, 32@14, 16@28; ``(8, 16, 32)`` -> 8@28, 16@14,
    32@7, 16@14, 8@28; ``(8,)`` -> a single full-resolution block. Every residual block receives its
    own projection of the sinusoidal time embedding. The output conv is zero-initialised.
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 32, 16),
        in_channels: int = 1,
        time_dim: int = 64,
        groups: int = 8,
    ) -> None:
        super().__init__()
        chs = validate_channels(channels)
        for name, value in (("in_channels", in_channels), ("time_dim", time_dim), ("groups", groups)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.channels = chs
        self.in_channels = in_channels
        self.time_dim = time_dim

        k = chs.index(max(chs))
        last = len(chs) - 1 - chs[::-1].index(max(chs))
        enc, mid, given_dec = chs[:k], chs[k : last + 1], chs[last + 1 :]
        dec = [given_dec[m] if m < len(given_dec) else chs[k - 1 - m] for m in range(k)]
        extra = given_dec[k:]

        emb_dim = 4 * time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(in_channels, chs[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        prev = chs[0]
        for width in enc:
            self.down_blocks.append(_ResBlock(prev, width, emb_dim, groups))
            self.downs.append(_Down(width))
            prev = width
        self.mid_blocks = nn.ModuleList()
        for width in mid:
            self.mid_blocks.append(_ResBlock(prev, width, emb_dim, groups))
            prev = width
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for m, width in enumerate(dec):
            skip = enc[k - 1 - m]
            self.ups.append(_Up(prev))
            self.up_blocks.append(_ResBlock(prev + skip, width, emb_dim, groups))
            prev = width
        self.extra_blocks = nn.ModuleList()
        for width in extra:
            self.extra_blocks.append(_ResBlock(prev, width, emb_dim, groups))
            prev = width

        self.out_norm = _norm(prev, groups)
        self.out_conv = nn.Conv2d(prev, in_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Predict noise for ``x`` (B, C, H, W) at integer timesteps ``t`` (B,) or scalar; returns (B, C, H, W)."""
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_mlp(sinusoidal_embedding(t.to(x.device), self.time_dim).to(x.dtype))  # (B, 4*time_dim)

        h = self.stem(x)  # (B, c0, H, W)
        skips: list[Tensor] = []
        for block, down in zip(self.down_blocks, self.downs):
            h = block(h, emb)  # (B, c_i, H_i, W_i)
            skips.append(h)
            h = down(h)  # (B, c_i, H_{i+1}, W_{i+1})
        for block in self.mid_blocks:
            h = block(h, emb)  # (B, c_max, H_k, W_k)
        for up, block in zip(self.ups, self.up_blocks):
            skip = skips.pop()  # (B, c_j, H_j, W_j)
            h = up(h, skip.shape[-2:])  # (B, c_prev, H_j, W_j)
            h = block(torch.cat([h, skip], dim=1), emb)  # (B, d_m, H_j, W_j)
        for block in self.extra_blocks:
            h = block(h, emb)  # (B, d, H, W)
        return self.out_conv(F.silu(self.out_norm(h)))  # (B, C, H, W)
