"""Min-SNR-γ loss weighting (Hang et al. 2023): the weights against hand-computed SNRs, and the module's
weighted training loss against the per-example MSE computed by hand (validation stays unweighted)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddpm_lightning.core import schedules
from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.loss_weighting import MinSNR
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.samplers import Ancestral
from ddpm_lightning.lit.module import DiffusionModule


def test_weights_match_hand_computed_snr() -> None:
    s = schedules.linear(T=4, beta_start=0.1, beta_end=0.4)
    ab = [0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7, 0.9 * 0.8 * 0.7 * 0.6]  # ᾱ_1..ᾱ_4
    snr = [a / (1 - a) for a in ab]  # 9, 2.571, 1.016, 0.435
    t = torch.tensor([1, 2, 3, 4])
    w_eps = MinSNR(gamma=2.0)(s, t, "eps")
    assert w_eps.tolist() == pytest.approx([2.0 / snr[0], 2.0 / snr[1], 1.0, 1.0], rel=1e-5)
    w_x0 = MinSNR(gamma=2.0)(s, t, "x0")
    assert w_x0.tolist() == pytest.approx([2.0, 2.0, snr[2], snr[3]], rel=1e-5)


def test_eps_weights_are_one_at_noisy_steps_and_fall_at_clean_ones() -> None:
    s = schedules.cosine(T=1000)
    w = MinSNR(gamma=5.0)(s, torch.arange(1, 1001), "eps")  # (T,)
    assert ((w > 0) & (w <= 1)).all()
    assert (w[1:] >= w[:-1]).all()  # SNR falls with t, so the weight rises to 1
    assert w[-1] == 1.0 and w[0] < 1e-3  # t = 1 is almost clean: SNR ~ 6e3


@pytest.mark.parametrize("gamma", [0, -1.0, "5", True])
def test_bad_gamma_is_one_clear_error(gamma) -> None:
    with pytest.raises(DDPMError, match="gamma must be a positive number"):
        MinSNR(gamma=gamma)


def test_module_weights_the_training_loss_but_not_the_validation_loss() -> None:
    torch.manual_seed(0)
    net = CNN(channels=(4,))
    s = schedules.linear(T=50)
    weighted = DiffusionModule(net, s, Gaussian(), Ancestral, loss_weighting=MinSNR(gamma=1.0))
    plain = DiffusionModule(net, s, Gaussian(), Ancestral)
    x0 = torch.rand(6, 1, 28, 28) * 2 - 1

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(7)

    got, _ = weighted.diffusion_loss(x0, gen())
    # the same draws by hand: t, then the example, then the per-example MSE times min(SNR, 1)/SNR
    g = gen()
    t = torch.randint(1, 51, (6,), generator=g)
    ex = weighted.process.training_example(x0, t, g)
    per = F.mse_loss(net(ex.z_t, t), ex.target, reduction="none").flatten(1).mean(1)
    ab = s.alpha_bars[t].double()
    snr = ab / (1 - ab)
    want = (snr.clamp(max=1.0) / snr * per.double()).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    unweighted, _ = plain.diffusion_loss(x0, gen())
    assert got.item() < unweighted.item()  # some weights < 1, none > 1
    assert weighted.diffusion_loss(x0, gen(), weighted=False)[0].item() == pytest.approx(unweighted.item())
