"""The MNIST classifier behind the classifier FID (``fid_mnist``): train, save, load, train once when missing.

The weights file is a plain dict that ``torch.load(weights_only=True)`` reads: ``state_dict``, ``arch``
(constructor arguments), ``test_accuracy`` on the 10,000 MNIST test images, ``epochs``, ``seed`` and
``format``. The project ships one, ``ddpm_lightning/assets/mnist_classifier.pt`` (made by the entry point
``python -m ddpm_lightning.classifier output=ddpm_lightning/assets/mnist_classifier.pt``); the metrics use it
unless given another path, so ``fid_mnist`` means the same feature space on every machine.

The loop is plain torch (a few hundred Adam steps, no logging or checkpointing to manage), so that
``load_or_train_classifier`` can also run inside a Trainer's callback set-up.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.networks.classifier import MNISTClassifier
from ddpm_lightning.evaluation.data import load_mnist
from ddpm_lightning.utils import atomic_open, pick_device

log = logging.getLogger(__name__)

FORMAT = "ddpm_lightning.mnist_classifier/1"
PACKAGED_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "mnist_classifier.pt"


@torch.no_grad()
def accuracy(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` (N, 1, 28, 28) in [−1, 1] classified as ``labels`` (N,)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start : start + batch_size].to(device))  # (b, 10)
        correct += int((logits.argmax(1).cpu() == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, images.shape[0])


def train_classifier(
    data_root: str | os.PathLike,
    epochs: int = 3,
    batch_size: int = 256,
    lr: float = 4e-3,
    seed: int = 0,
    channels: Sequence[int] = (16, 32),
    feature_dim: int = 64,
    max_steps: int | None = None,
    device: str | None = None,
) -> tuple[MNISTClassifier, dict[str, Any]]:
    """Train on the 60,000 training images (Adam, one-cycle learning rate peaking at ``lr``), measure on
    the 10,000 test images. ``max_steps`` stops early (tests). Returns (model in eval mode, metadata)."""
    if epochs < 1 or batch_size < 1:
        raise DDPMError(f"classifier epochs and batch_size must be >= 1, got {epochs!r}, {batch_size!r}")
    dev = pick_device(device)
    x, y = load_mnist(data_root, "train")  # (60000, 1, 28, 28) in [−1, 1], (60000,)
    x_test, y_test = load_mnist(data_root, "test")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MNISTClassifier(channels=tuple(channels), feature_dim=feature_dim).to(dev)
    steps_per_epoch = x.shape[0] // batch_size
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr / 4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(total, 2))
    start, step = time.time(), 0
    model.train()
    while step < total:
        perm = torch.randperm(x.shape[0], generator=generator)
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[i * batch_size : (i + 1) * batch_size]
            loss = F.cross_entropy(model(x[idx].to(dev)), y[idx].to(dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
        log.info("classifier: %d/%d steps, loss %.4f, %.0f s", step, total, loss.item(), time.time() - start)
    model.eval()
    test_acc = accuracy(model, x_test, y_test)
    meta = {
        "format": FORMAT,
        "arch": {"channels": list(model.channels), "feature_dim": model.feature_dim},
        "test_accuracy": test_acc,
        "epochs": epochs,
        "steps": step,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "train_seconds": round(time.time() - start, 1),
    }
    log.info("classifier: test accuracy %.4f after %d steps (%.0f s)", test_acc, step, meta["train_seconds"])
    return model, meta


def save_classifier(model: MNISTClassifier, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``{state_dict, **meta}`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        torch.save({**meta, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, f)
    return path


def load_classifier(path: str | os.PathLike) -> tuple[MNISTClassifier, dict[str, Any]]:
    """(model in eval mode on cpu, metadata) from a file written by ``save_classifier``; read with
    ``weights_only=True``. Any problem is one DDPMError line naming the file."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DDPMError(f"cannot read classifier weights {path}: {first}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "state_dict" not in blob:
        raise DDPMError(f"{path} is not a ddpm_lightning MNIST classifier file (format {FORMAT!r})")
    model = MNISTClassifier(**blob["arch"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise DDPMError(
            f"classifier weights {path} do not match its arch {blob['arch']}: {str(e).splitlines()[0]}"
        ) from None
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    meta["path"] = str(path)
    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return model.eval(), meta


def load_or_train_classifier(
    path: str | os.PathLike | None,
    data_root: str | os.PathLike | None = None,
    train_if_missing: bool = True,
    **train_kwargs: Any,
) -> tuple[MNISTClassifier, dict[str, Any]]:
    """The classifier at ``path`` (``None``: the packaged weights). A missing file is trained once
    (1-2 minutes on CPU, needs ``data_root``) and saved there when ``train_if_missing``."""
    target = Path(path) if path else PACKAGED_WEIGHTS
    if target.is_file():
        return load_classifier(target)
    how = f"train it with `python -m ddpm_lightning.classifier output={target}`"
    if path is None:
        raise DDPMError(f"the packaged classifier weights {target} are missing; {how} or set a classifier path")
    if not train_if_missing:
        raise DDPMError(f"classifier weights not found: {target}; {how} or allow training when missing")
    if data_root is None:
        raise DDPMError(f"classifier weights not found: {target}, and no MNIST data_root to train them; {how}")
    log.warning("classifier weights not found at %s: training them once now (1-2 minutes on CPU)", target)
    model, meta = train_classifier(data_root, **train_kwargs)
    save_classifier(model, target, meta)
    return load_classifier(target)
