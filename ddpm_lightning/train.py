"""Train a diffusion model: ``python -m ddpm_lightning.train [overrides]``.

The config (conf/train.yaml) chooses schedule, capacity, model, degradation, sampler, data,
trainer, logger and callbacks; each run writes its config, checkpoints, sample grids and
TensorBoard events into its own directory under outputs/.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.cli import entry, run_task
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.checkpoint import build_module

log = logging.getLogger(__name__)

GROUPS = ("schedule", "capacity", "model", "degradation", "sampler", "data", "trainer", "logger", "callbacks", "experiment")


def train(cfg: DictConfig) -> dict[str, float]:
    pl.seed_everything(cfg.seed, workers=True)
    run_config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]

    datamodule = instantiate(cfg.data)
    module = build_module(cfg, run_config)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    log.info("network %s: %d parameters; schedule %s", cfg.model._target_, module.num_parameters(), module.schedule)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics["num_parameters"] = module.num_parameters()  # read by the report
    metrics["train_time_s"] = time.perf_counter() - start
    log.info("final metrics: %s", metrics)
    if trainer.is_global_zero:  # under DDP every rank gets here; one writes
        Path(cfg.paths.output_dir, "metrics.yaml").write_text(OmegaConf.to_yaml(metrics))
    objective = cfg.get("optimized_metric")
    if objective and objective not in metrics:
        raise DDPMError(
            f"optimized_metric '{objective}' was not logged by this run (logged: {', '.join(sorted(metrics))}); "
            "enable the callback that logs it, or set optimized_metric=val/loss"
        )
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_task(train, cfg)
    objective = cfg.get("optimized_metric")
    return metrics.get(objective) if objective else None


if __name__ == "__main__":
    entry(main, GROUPS, "train")
