"""The forward process q(z_t | x0) = N(√ᾱ_t·x0, (1 − ᾱ_t)·I) (Ho et al. 2020, eq. 4), checked on many draws."""

import pytest
import torch

from ddpm_lightning.core import schedules
from ddpm_lightning.core.degradations import Gaussian


@pytest.mark.parametrize("t_value", [1, 100, 500, 1000])
def test_noised_marginal_mean_and_variance(t_value):
    s = schedules.linear()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1  # fixed images
    n = 20_000
    x = x0.repeat(n // 4, 1, 1, 1)
    t = torch.full((x.shape[0],), t_value, dtype=torch.long)
    z, target = Gaussian().training_example(x, t, s, g)
    z = z.view(n // 4, 4, 1, 8, 8)
    ab = s.alpha_bars[t_value].item()
    mean, var = z.mean(0), z.var(0)
    assert torch.allclose(mean, ab**0.5 * x0, atol=5 * ((1 - ab) / (n / 4)) ** 0.5 + 1e-6)
    assert var.mean().item() == pytest.approx(1 - ab, rel=0.03)
    # the target is the noise that was added: z = √ᾱ·x0 + √(1−ᾱ)·target
    assert torch.allclose(z.view_as(x), ab**0.5 * x + (1 - ab) ** 0.5 * target, atol=1e-5)


def test_t_zero_is_identity():
    s = schedules.linear()
    x0 = torch.randn(3, 1, 28, 28)
    z, _ = Gaussian().training_example(x0, torch.zeros(3, dtype=torch.long), s)
    assert torch.equal(z, x0)
