"""lit/ema.py: the EMA's decay warm-up d_n = min(decay, (1 + n)/(warmup + n)) through torch's AveragedModel."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ddpm_lightning.lit.ema import WarmupEMA, warmup_ema_avg_fn


def test_average_follows_the_warm_up_decay_then_the_fixed_one() -> None:
    w = nn.Parameter(torch.zeros(()))
    model = nn.Module()
    model.w = w
    avg = AveragedModel(model, avg_fn=warmup_ema_avg_fn(decay=0.9, warmup=10.0))
    expected = None
    for n in range(200):
        with torch.no_grad():
            w.fill_(float(n))
        avg.update_parameters(model)
        d = min(0.9, (1 + n) / (10 + n))
        expected = float(n) if expected is None else d * expected + (1 - d) * n  # the first update copies
        assert avg.module.w.item() == pytest.approx(expected, rel=1e-5)
    # with a fixed 0.9 from the start the average would lag by ~9 steps; the warm-up's lag grows the same way
    assert 200 - 1 - avg.module.w.item() == pytest.approx(9, abs=0.5)


def test_a_young_average_tracks_the_weights_unlike_a_fixed_decay() -> None:
    """Weights moving 0 -> 1 over 300 updates: the warm-up average lags ~n/10 updates, a fixed 0.999 ~1000."""
    warm = warmup_ema_avg_fn(decay=0.999)
    ema_w, ema_f = torch.tensor(0.0), torch.tensor(0.0)
    for n in range(1, 301):
        w = torch.tensor(n / 300)
        ema_w = warm(ema_w, w, torch.tensor(n))
        ema_f = 0.999 * ema_f + 0.001 * w
    assert ema_w.item() > 0.85 and ema_f.item() < 0.15


def test_bad_settings_and_update_steps() -> None:
    with pytest.raises(ValueError, match="decay"):
        warmup_ema_avg_fn(decay=1.0)
    ema = WarmupEMA(update_starting_at_step=5, update_every_n_steps=2)
    assert [s for s in range(10) if ema.should_update(step_idx=s)] == [6, 8]
    assert not ema.should_update(epoch_idx=3)
