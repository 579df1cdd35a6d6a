"""experiment=best: the LR scheduler (warm-up, cosine decay, stepped each optimizer step), the EMA's warm-up
start and the sampler's x̂0 clipping, composed from the real config (no training: milliseconds)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from ddpm_lightning.build import build_module
from ddpm_lightning.cli import _compose
from ddpm_lightning.lit.ema import WarmupEMA

STEPS = 200  # the run's optimizer steps (Lightning's trainer.estimated_stepping_batches)


@pytest.fixture(scope="module")
def cfg():
    return _compose("train", ["experiment=best", "T=20", "sampler.num_steps=10"])


def test_scheduler_warms_up_then_decays_by_cosine_to_near_zero(cfg) -> None:
    module = build_module(cfg)
    module.trainer = SimpleNamespace(estimated_stepping_batches=STEPS)  # what configure_optimizers reads
    conf = module.configure_optimizers()
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"  # stepped after every optimizer step, not every epoch
    peak = cfg.optimizer.lr
    lrs = []
    for _ in range(STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    top = max(range(STEPS), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(peak / 25)  # warm-up from max_lr / div_factor
    assert lrs[top] == pytest.approx(peak, rel=1e-3) and top == pytest.approx(0.05 * STEPS, abs=1)
    assert all(a <= b for a, b in zip(lrs[:top], lrs[1 : top + 1]))  # rising, then
    assert all(a >= b for a, b in zip(lrs[top:], lrs[top + 1 :]))  # falling
    assert lrs[STEPS // 2 + top // 2] == pytest.approx(peak / 2, rel=0.05)  # cosine: half way down at mid-decay
    assert lrs[-1] < peak / 1000
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)  # cycle_momentum off: Adam's β1 untouched


def test_default_config_has_no_scheduler_and_a_constant_lr() -> None:
    module = build_module(_compose("train", ["T=20"]))
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)  # no trainer needed, as before


def test_ema_warms_up_and_the_sampler_clips(cfg) -> None:
    ema = instantiate(cfg.callbacks.ema)
    assert isinstance(ema, WarmupEMA) and ema.decay == pytest.approx(0.999)
    assert ema.should_update(step_idx=0) and not ema.should_update(epoch_idx=0)  # every optimizer step
    sampler = build_module(cfg).make_sampler()
    assert type(sampler).__name__ == "DPMSolver" and sampler.clip_x0


@pytest.mark.parametrize(
    ("ablation", "changed"),
    [
        ("no_ema", lambda c: c.callbacks.get("ema") is None),
        ("constant_lr", lambda c: c.lr_scheduler is None and c.optimizer.lr == 1e-3),
        ("no_clip", lambda c: c.sampler.clip_x0 is False),
        ("linear_schedule", lambda c: c.schedule._target_.endswith(".linear")),
        ("no_min_snr", lambda c: c.loss_weighting is None),
        (
            "study_training",
            lambda c: (
                c.lr_scheduler is None
                and c.optimizer.lr == 2e-4
                and c.callbacks.get("ema") is None
                and c.schedule._target_.endswith(".linear")
                and c.trainer.gradient_clip_val is None
                and c.loss_weighting is None
            ),
        ),
    ],
)
def test_each_ablation_changes_its_one_thing(ablation, changed) -> None:
    best = _compose("train", ["experiment=best"])
    cfg = _compose("train", ["experiment=best", f"+ablation={ablation}"])
    assert changed(cfg) and not changed(best)
    assert cfg.capacity.channels == best.capacity.channels and cfg.model._target_ == best.model._target_


def test_small_unet_ablation_changes_only_the_network() -> None:
    best = _compose("train", ["experiment=best"])
    cfg = _compose("train", ["experiment=best", "+ablation=small_unet"])
    assert list(best.capacity.channels) == [16, 32, 64, 64, 32, 16] and list(cfg.capacity.channels) == [16, 32, 32, 16]
    assert cfg.loss_weighting == best.loss_weighting and cfg.lr_scheduler == best.lr_scheduler


def test_min_snr_weighting_reaches_the_module(cfg) -> None:
    from ddpm_lightning.core.loss_weighting import MinSNR

    weighting = build_module(cfg).loss_weighting
    assert isinstance(weighting, MinSNR) and weighting.gamma == 5.0
    assert build_module(_compose("train", ["T=20"])).loss_weighting is None  # the study: uniform (eq. 14)


def test_gpu_recipe_is_bounded_to_ten_minutes() -> None:
    cfg = _compose("train", ["experiment=best_gpu"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.max_time == "00:00:10:00"
    assert list(cfg.capacity.channels) == [64, 128, 256, 128, 64]  # its own network, not best's medium U-Net
    assert cfg.lr_scheduler is not None and cfg.sampler.clip_x0 and cfg.callbacks.ema.decay > 0.999


def test_unknown_ablation_is_one_line_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    from ddpm_lightning.cli import check_overrides
    from ddpm_lightning.train import GROUPS

    with pytest.raises(SystemExit) as exit_info:
        check_overrides(["train", "experiment=best", "+ablation=nope"], "train", GROUPS)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown ablation 'nope'; valid choices: ") and "no_ema" in err and "\n" not in err
