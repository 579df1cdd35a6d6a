"""The study's small CNN noise predictor.

Each block: 7×7 conv (zero padding, same size) → LayerNorm over (C, H, W) → GELU. The sinusoidal
time encoding, through a small MLP, is added to the first block's output. A final 3×3 conv maps
back to the image channels. ``channels`` are the hidden layers: (16, 32, 32, 16) in the study,
(64, 128, 256, 128, 64) for its "increased capacity".
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ddpm_lightning.core.networks.common import TimeEmbedding, validate_channels


class CNNBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, image_size: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm((out_ch, image_size, image_size))
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class CNN(nn.Module):
    """ε-prediction network g(z_t, t): (B, C, H, W), (B,) -> (B, C, H, W)."""

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 32, 16),
        in_channels: int = 1,
        image_size: int = 28,
        kernel_size: int = 7,
        last_kernel_size: int = 3,
        time_dim: int = 32,
    ) -> None:
        super().__init__()
        self.channels = validate_channels(channels)
        widths = (in_channels, *self.channels)
        self.blocks = nn.ModuleList(CNNBlock(a, b, image_size, kernel_size) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Conv2d(self.channels[-1], in_channels, last_kernel_size, padding=last_kernel_size // 2)
        self.time_embed = TimeEmbedding(self.channels[0], dim=time_dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.blocks[0](x)  # (B, C0, H, W)
        h = h + self.time_embed(t)[:, :, None, None]  # time added after the first block
        for block in self.blocks[1:]:
            h = block(h)  # (B, Ci, H, W)
        return self.out(h)  # (B, C, H, W)
