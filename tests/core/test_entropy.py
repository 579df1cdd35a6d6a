"""Tests for the histogram entropy DES uses: H = −Σ p·log2 p over 256 bins spanning min..max."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lightning.core.entropy import batch_entropy, histogram_entropy, image_entropy

LEVELS = torch.arange(256, dtype=torch.float32) * 2 / 255 - 1  # the 256 MNIST grey levels in [−1, 1]


def _reference_entropy(values: torch.Tensor, bins: int = 256) -> float:
    """Independent reference: torch.histc over the values' own min..max, then −Σ p·log2 p."""
    v = values.double().flatten()
    counts = torch.histc(v, bins=bins, min=float(v.min()), max=float(v.max()))
    p = counts[counts > 0] / v.numel()
    return float(-(p * torch.log2(p)).sum())


def test_constant_batch_has_zero_entropy() -> None:
    x = torch.full((8, 1, 28, 28), 0.3)
    assert batch_entropy(x).item() == 0.0
    assert torch.equal(image_entropy(x), torch.zeros(8))


def test_uniform_over_256_levels_is_8_bits() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.stack([LEVELS[torch.randperm(256, generator=g)] for _ in range(4)]).view(4, 1, 16, 16)
    assert batch_entropy(images).item() == pytest.approx(8.0, abs=1e-5)  # every level 4 times
    assert torch.allclose(image_entropy(images), torch.full((4,), 8.0), atol=1e-5)  # every level once


def test_two_equal_halves_is_one_bit_and_per_image_differs_from_batch() -> None:
    x = torch.cat([torch.full((2, 1, 4, 4), -1.0), torch.full((2, 1, 4, 4), 1.0)])  # constant images
    assert batch_entropy(x).item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(image_entropy(x), torch.zeros(4))


@pytest.mark.parametrize("bins", [256, 16, 2])
def test_matches_histc_reference_on_random_data(bins: int) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 28, 28, generator=g) ** 3  # heavy-tailed: many empty bins
    assert batch_entropy(x, bins).item() == pytest.approx(_reference_entropy(x, bins), abs=1e-4)
    per_image = image_entropy(x, bins)
    for i in range(x.shape[0]):
        assert per_image[i].item() == pytest.approx(_reference_entropy(x[i], bins), abs=1e-4)


def test_matches_reference_on_quantised_mnist_like_data() -> None:
    g = torch.Generator().manual_seed(2)
    idx = (torch.rand(16, 1, 28, 28, generator=g) ** 4 * 256).long().clamp(max=255)  # mostly dark, like MNIST
    x = LEVELS[idx]
    assert batch_entropy(x).item() == pytest.approx(_reference_entropy(x), abs=1e-5)
    assert 0.0 < batch_entropy(x).item() < 8.0


def test_rows_are_independent_and_vectorised() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 1, 10, 10, generator=g)
    x[2] = 0.5  # a constant image among varied ones
    h = image_entropy(x)
    assert h.shape == (5,)
    assert h[2].item() == 0.0
    for i in range(5):
        assert h[i].item() == pytest.approx(batch_entropy(x[i : i + 1]).item(), abs=1e-6)


def test_scale_invariant_and_bounded() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 1, 28, 28, generator=g)
    assert batch_entropy(x).item() == pytest.approx(batch_entropy(10 * x - 3).item(), abs=1e-4)  # spans min..max
    assert 0.0 <= batch_entropy(x).item() <= math.log2(256) + 1e-6


def test_no_gradient_and_half_precision_input() -> None:
    # seeded, and values that float16 holds exactly: the test does not depend on what ran before it
    # (unseeded, the rounding to float16 moved a few of 128 values across bin edges: up to 0.05 bits apart)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)).half().float().requires_grad_()
    h = batch_entropy(x)
    assert not h.requires_grad and h.dtype == torch.float32
    assert batch_entropy(x.detach().half()).item() == pytest.approx(h.item(), abs=1e-6)  # binned in float32


def test_histogram_entropy_shape() -> None:
    assert histogram_entropy(torch.rand(7, 100)).shape == (7,)
