"""The MNIST classifier behind val/fid_mnist: training, saving and loading, train-once reuse, the CLI, accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ddpm_lightning.evaluation.classifier as clf
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.networks.classifier import MNISTClassifier
from ddpm_lightning.lit.data import load_mnist
from tests.helpers.run import run_cli

SMALL = {"channels": (8, 16), "feature_dim": 16}  # a classifier that trains in a blink (accuracy irrelevant)


def test_network_shapes_and_bad_arch() -> None:
    net = MNISTClassifier()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    assert net(x).shape == (5, 10) and net.features(x).shape == (5, 64)
    with pytest.raises(DDPMError, match="two channel widths"):
        MNISTClassifier(channels=(8, 16, 32))


def test_train_save_load_roundtrip(tmp_path: Path, data_dir: Path) -> None:
    model, meta = clf.train_classifier(data_dir, max_steps=3, **SMALL)
    assert meta["steps"] == 3 and 0.0 <= meta["test_accuracy"] <= 1.0 and meta["format"] == clf.FORMAT
    path = clf.save_classifier(model, tmp_path / "sub" / "c.pt", meta)
    loaded, meta2 = clf.load_classifier(path)
    x = load_mnist(data_dir, "test")[0][:8]
    assert torch.allclose(loaded(x), model(x)) and loaded.features(x).shape == (8, 16)
    assert meta2["test_accuracy"] == meta["test_accuracy"] and len(meta2["sha256"]) == 64
    assert not list((tmp_path / "sub").glob(".*.tmp*"))  # written atomically, no leftovers


def test_load_or_train_trains_once(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_train = clf.train_classifier

    def counting(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(clf, "train_classifier", counting)
    path = tmp_path / "cache" / "mnist_classifier.pt"
    _, meta = clf.load_or_train_classifier(path, data_dir, max_steps=2, **SMALL)
    mtime = path.stat().st_mtime_ns
    _, meta_again = clf.load_or_train_classifier(path, data_dir, max_steps=2, **SMALL)
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime and meta_again["sha256"] == meta["sha256"]

    with pytest.raises(DDPMError, match="classifier weights not found: .*python -m ddpm_lightning.classifier"):
        clf.load_or_train_classifier(tmp_path / "missing.pt", data_dir, train_if_missing=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DDPMError, match="cannot read classifier weights .*junk.pt"):
        clf.load_or_train_classifier(tmp_path / "junk.pt", data_dir)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(DDPMError, match="not a ddpm_lightning MNIST classifier file"):
        clf.load_classifier(tmp_path / "other.pt")
    monkeypatch.setattr(clf, "PACKAGED_WEIGHTS", tmp_path / "nowhere.pt")
    with pytest.raises(DDPMError, match="packaged classifier weights .*nowhere.pt are missing"):
        clf.load_or_train_classifier(None, data_dir)


def test_packaged_classifier_reaches_99_percent(data_dir: Path) -> None:
    model, meta = clf.load_or_train_classifier(None)
    x, y = load_mnist(data_dir, "test")
    acc = clf.accuracy(model, x, y)
    assert acc >= 0.99, acc
    assert abs(acc - meta["test_accuracy"]) < 1e-9  # the recorded number is the measured one


@pytest.mark.e2e
def test_cli_writes_weights_and_fails_below_min_accuracy(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "c.pt"
    proc = run_cli(
        "ddpm_lightning.classifier",
        "max_steps=2",
        "channels=[8,16]",
        "feature_dim=16",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
        warm=False,  # cold: a fresh interpreter, as a user starts it (one launch per entry point)
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: classifier test accuracy") and "< min_accuracy 0.99" in last
    assert out.is_file()  # kept for inspection
    summary = json.loads((tmp_path / "run" / "classifier.json").read_text())
    assert summary["steps"] == 2 and summary["output"] == str(out)
