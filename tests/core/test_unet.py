"""Tests for the time-conditioned U-Net noise predictor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddpm_lightning.core.networks.unet import UNet

SMALL = (16, 32, 32, 16)
LARGE = (64, 128, 256, 128, 64)


def _randomise_output(model: UNet) -> UNet:
    """Re-initialise the zero-initialised output conv so signal and gradients pass through it."""
    nn.init.normal_(model.out_conv.weight, std=0.1)
    nn.init.normal_(model.out_conv.bias, std=0.1)
    return model


@pytest.mark.parametrize("channels", [SMALL, LARGE, (8,), (8, 16, 32), (4, 8, 16, 32, 64, 32)])
def test_output_shape_28(channels: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = UNet(channels)
    x = torch.randn(2, 1, 28, 28)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("channels", [SMALL, (4, 8, 16, 32, 64, 32)])
def test_output_shape_32_and_multichannel(channels: tuple[int, ...]) -> None:
    model = UNet(channels, in_channels=3)
    x = torch.randn(2, 3, 32, 32)
    assert model(x, torch.tensor([5, 10])).shape == x.shape


def test_odd_size_and_scalar_t() -> None:
    model = _randomise_output(UNet((8, 16, 32)))
    x = torch.randn(2, 1, 30, 30)  # 30 -> 15 -> 8, resized back to the skips' sizes
    assert model(x, torch.tensor(7)).shape == x.shape


def test_zero_init_output_is_zero() -> None:
    model = UNet(SMALL)
    out = model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]))
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("channels", [SMALL, LARGE, (8,), (4, 8, 16, 32, 64, 32)])
def test_time_embedding_changes_output(channels: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = _randomise_output(UNet(channels)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out_early = model(x, torch.tensor([1, 1]))
        out_late = model(x, torch.tensor([900, 900]))
    assert not torch.allclose(out_early, out_late, atol=1e-4)


@pytest.mark.parametrize("channels", [SMALL, (8, 16, 32), (4, 8, 16, 32, 64, 32), (16, 8, 4)])
def test_gradients_reach_every_parameter(channels: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = _randomise_output(UNet(channels))
    model(torch.randn(2, 1, 28, 28), torch.tensor([3, 700])).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and torch.count_nonzero(p.grad) == 0]
    assert not missing, f"no grad for {missing}"
    assert not zero, f"all-zero grad for {zero}"


def test_capacity_rule_layout() -> None:
    small, large = UNet(SMALL), UNet(LARGE)
    assert [b.conv1.out_channels for b in small.down_blocks] == [16]
    assert [b.conv1.out_channels for b in small.mid_blocks] == [32, 32]
    assert [b.conv1.out_channels for b in small.up_blocks] == [16]
    assert [b.conv1.out_channels for b in large.down_blocks] == [64, 128]
    assert [b.conv1.out_channels for b in large.up_blocks] == [128, 64]
    mono = UNet((8, 16, 32))  # no decoder widths given: mirror the encoder
    assert [b.conv1.out_channels for b in mono.up_blocks] == [16, 8]
    extra = UNet((8, 16, 8, 4))  # surplus decoder widths become full-resolution blocks
    assert [b.conv1.out_channels for b in extra.up_blocks] == [8]
    assert [b.conv1.out_channels for b in extra.extra_blocks] == [4]


@pytest.mark.parametrize("bad", [(), [], (16, 0), [8, -1], (8, 2.5)])
def test_invalid_channels_raise(bad: tuple) -> None:
    with pytest.raises(ValueError, match="channels") as info:
        UNet(bad)
    assert str(list(bad)) in str(info.value)
    assert "\n" not in str(info.value)
