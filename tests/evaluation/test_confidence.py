"""Floors (real vs real FID at the same N) and bootstrap intervals of FID."""

from __future__ import annotations

from pathlib import Path

import pytest

import ddpm_lightning.evaluation.metrics as metrics
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.evaluation import SampleQuality
from ddpm_lightning.evaluation.classifier import load_or_train_classifier
from ddpm_lightning.evaluation.confidence import bootstrap_fid, real_floor
from ddpm_lightning.evaluation.data import load_mnist


@pytest.fixture(scope="module")
def clf() -> metrics.ClassifierFeatures:
    model, meta = load_or_train_classifier(None)
    return metrics.ClassifierFeatures(model, meta["sha256"])


def test_floor_is_train_vs_test_computed_once_and_cached(tmp_path: Path, data_dir: Path, clf) -> None:
    train, test = load_mnist(data_dir, "train")[0][:200], load_mnist(data_dir, "test")[0][:200]
    value = real_floor(clf, train, test, tmp_path)
    assert value == pytest.approx(metrics.frechet_distance(clf, train, test), rel=1e-9) and value > 0
    files = list((tmp_path / "floors").glob("fid_train-vs-test_n200_mnist-classifier-*.json"))
    assert len(files) == 1
    calls = clf.calls
    assert real_floor(clf, train, test, tmp_path) == value and clf.calls == calls  # read back, nothing extracted
    assert real_floor(clf, train[:100], test[:100], tmp_path) != value  # another N, another floor


def test_bootstrap_interval_brackets_the_spread(data_dir: Path, clf) -> None:
    test = load_mnist(data_dir, "test")[0]
    real, fake = clf(test[:300]), clf(test[300:600])  # (300, 64) each
    low, high = bootstrap_fid(clf, real, fake, resamples=30, seed=1)
    assert 0 < low < high and (low, high) == bootstrap_fid(clf, real, fake, resamples=30, seed=1)
    small_low, small_high = bootstrap_fid(clf, real, fake[:60], resamples=30, seed=1)
    assert small_high - small_low > high - low  # fewer samples, wider interval


def test_bootstrap_setting_errors() -> None:
    with pytest.raises(
        DDPMError, match=r"x: bootstrap must be an integer >= 0 and confidence in \(0, 1\), got -1, 0.95"
    ):
        SampleQuality(bootstrap=-1, config_key="x")
