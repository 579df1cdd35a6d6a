"""SampleQuality: free of Lightning and Hydra, persistent real statistics, one config group for the callback
and evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import ddpm_lightning.evaluation.metrics as metrics
from ddpm_lightning.cli import CONF_DIR
from ddpm_lightning.evaluation import SampleQuality
from ddpm_lightning.evaluation.data import load_mnist
from ddpm_lightning.lit.metric_callbacks import GenerativeMetrics


def test_compute_reuses_real_statistics_and_equals_a_fresh_fid(data_dir: Path, tmp_path: Path) -> None:
    quality = SampleQuality(n=50, psnr_ssim=False, fid=False, kid=False, data_root=str(data_dir), bootstrap=3)
    quality.prepare()
    clf = quality.classifier
    assert clf is not None and quality.n_real == 50 and set(quality.floor_values) == {"classifier"}
    fake = load_mnist(data_dir, "train")[0][1000:1050]  # (50, 1, 28, 28): real digits as "samples"
    calls = clf.calls
    first = quality.compute(fake)
    assert clf.calls == calls + 1  # one batch of samples; the real features are not extracted again
    expected = metrics.frechet_distance(clf, quality.real["classifier"], fake)  # a fresh torchmetrics FID
    assert first["fid_mnist"] == pytest.approx(expected, rel=1e-9)
    noise = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert quality.compute(noise)["fid_mnist"] > 5 * first["fid_mnist"]  # the generated side was reset
    assert quality.compute(fake) == first  # same samples, same numbers (floors, intervals included)
    assert {"fid_mnist_floor", "fid_mnist_ci_low", "fid_mnist_ci_high", "class_entropy"} <= set(first)


def _compose(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_callback_and_evaluate_share_one_metrics_config() -> None:
    evaluate = OmegaConf.to_container(_compose("evaluate", "ckpt_path=x").metrics)
    study = OmegaConf.to_container(_compose("train", "callbacks=metrics").callbacks.generative_metrics)
    default = OmegaConf.to_container(_compose("train").callbacks.generative_metrics)
    own = {"_target_", "every_n_epochs", "sampler", "batch_size"}  # the callback's own keys
    assert set(study) - own == set(default) - own == set(evaluate)  # the same settings, the same names
    # evaluate: the study's settings, with its own n, seed, real images and a longer bootstrap
    differ = {k for k in evaluate if evaluate[k] != study[k]}
    assert differ <= {"n", "seed", "data_root", "split", "bootstrap"}, differ
    assert study["n"] == 1000 and study["fid"] and default["n"] == 100 and not default["fid"]
    cb = GenerativeMetrics(**{k: v for k, v in default.items() if k != "_target_"})
    assert cb.quality.n == 100 and cb.quality.switches == {
        "psnr_ssim": True,
        "fid": False,
        "kid": False,
        "fid_mnist": True,
    }
