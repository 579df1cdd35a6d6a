"""Train the MNIST classifier behind ``val/fid_mnist``: ``python -m ddpm_lightning.classifier [overrides]``.

conf/classifier.yaml chooses the data, the epochs and where the weights go (``output``, default
``${paths.cache_dir}/mnist_classifier.pt``). The run directory also gets ``classifier.json`` with the
weights file's numbers. Training, the file format and loading: ``ddpm_lightning.evaluation.classifier``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from ddpm_lightning.cli import entry, run_task
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.evaluation.classifier import save_classifier, train_classifier


def fit(cfg: DictConfig) -> dict[str, Any]:
    model, meta = train_classifier(
        cfg.data_root,
        epochs=int(cfg.epochs),
        batch_size=int(cfg.batch_size),
        lr=float(cfg.lr),
        seed=int(cfg.seed),
        channels=tuple(cfg.channels),
        feature_dim=int(cfg.feature_dim),
        max_steps=cfg.get("max_steps"),
        device=cfg.get("device"),
    )
    out = save_classifier(model, cfg.output, meta)
    summary = {**meta, "output": str(out)}
    Path(cfg.paths.output_dir, "classifier.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"test accuracy {meta['test_accuracy']:.4f} ({meta['steps']} steps, {meta['train_seconds']} s) -> {out}")
    if meta["test_accuracy"] < float(cfg.min_accuracy):
        raise DDPMError(
            f"classifier test accuracy {meta['test_accuracy']:.4f} < min_accuracy {cfg.min_accuracy} "
            f"(weights kept at {out}); train longer, e.g. epochs={int(cfg.epochs) + 1}"
        )
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="classifier")
def main(cfg: DictConfig) -> None:
    run_task(fit, cfg)


if __name__ == "__main__":
    entry(main, (), "classifier")
