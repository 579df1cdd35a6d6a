"""Train a diffusion model: ``python -m ddpm_lightning.train [overrides]``.

The config (conf/train.yaml) chooses schedule, capacity, model, degradation, sampler, data,
trainer, logger and callbacks; each run writes its config, checkpoints, sample grids and
TensorBoard events into its own directory under outputs/.
"""

from __future__ import annotations

GROUPS = (
    "schedule",
    "capacity",
    "model",
    "degradation",
    "sampler",
    "data",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "speed",
    "debug",
    "ablation",  # +ablation=<name>: one change to experiment=best (conf/ablation/)
)
if __name__ == "__main__":  # a typo in an override fails here, in about a second: before torch and Lightning load
    from ddpm_lightning.cli import check_argv

    check_argv("train", GROUPS)

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.build import build_module, instantiate_trainer
from ddpm_lightning.cli import FAILED_MARKER, entry, run_task
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.checkpoint import ConfigInCheckpoint, check_compatible
from ddpm_lightning.lit.resilience import OptimizerOverrides
from ddpm_lightning.lit.run_info import metrics_table, where_lines
from ddpm_lightning.lit.startup import check_optimizer, check_resumable, run_fit
from ddpm_lightning.rundir import write_yaml_atomic

log = logging.getLogger(__name__)


def check_ddp_launch(trainer: pl.Trainer) -> None:
    """Lightning's DDP starts ranks > 0 by re-running this command (same argv, plus hydra.run.dir): in a
    multirun that re-runs the whole sweep. Refuse it there; ddp_spawn and SLURM-started ranks are fine."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if not isinstance(launcher, _SubprocessScriptLauncher) or launcher.cluster_environment.creates_processes_externally:
        return
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise DDPMError(
            "trainer.strategy=ddp starts each extra rank by re-running the command, which in a multirun re-runs the "
            "whole sweep; in a multirun use trainer.strategy=ddp_spawn or hydra/launcher=slurm (srun starts the ranks)"
        )


def hydra_run() -> dict[str, Any]:
    """What callbacks and loggers ask for by key and only the entry point knows: the command line's overrides
    and the config choices (Hydra's ``overrides.task``, ``runtime.choices``); empty outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    return {"overrides": [str(o) for o in hc.overrides.task], "choices": dict(hc.runtime.choices)}


def instantiate_with(node: DictConfig, known: dict[str, Any]) -> Any:
    """``instantiate(node)`` with the ``known`` values of the keys ``node`` has (``overrides: []`` in its yaml)."""
    return instantiate(node, **{k: v for k, v in known.items() if k in node})


def train(cfg: DictConfig) -> dict[str, float]:
    if cfg.get("threads"):  # speed option: CPU threads for torch (null: torch's default, one per core)
        torch.set_num_threads(int(cfg.threads))
    if cfg.get("float32_matmul_precision"):  # speed option: "high" lets float32 matmuls use TF32 on a GPU
        torch.set_float32_matmul_precision(str(cfg.float32_matmul_precision))
    pl.seed_everything(cfg.seed, workers=True)
    run_config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]

    if cfg.get("ckpt_path"):  # resume: refuse a checkpoint of another model before Lightning loads it
        check_compatible(cfg.ckpt_path, cfg.module)
        check_resumable(cfg.ckpt_path, cfg.trainer)  # a finished run: refused, its metrics.yaml kept
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)  # instantiate(cfg.module): the module with its network, schedule, degradation, ...
    optimizer_values = check_optimizer(module, cfg.optimizer)  # optimizer.lr=-1: one line, before any writing
    known = hydra_run()  # the run's overrides: RunInfo's start lines and hparams, the TensorBoard run's name
    callbacks = [instantiate_with(c, known) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks.append(ConfigInCheckpoint(run_config))  # sample/evaluate rebuild the module from its `module` node
    if cfg.get("ckpt_path"):  # the configured lr (etc.) wins over the checkpoint's optimizer state, with a warning
        callbacks.append(OptimizerOverrides(optimizer_values))
    loggers = [instantiate_with(c, known) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = instantiate_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    check_ddp_launch(trainer)

    log.info("network %s: %d parameters; schedule %s", cfg.model._target_, module.num_parameters(), module.schedule)
    start = time.perf_counter()
    interrupted = run_fit(trainer, module, datamodule, cfg.get("ckpt_path"), cfg.paths.output_dir)
    Path(cfg.paths.output_dir, FAILED_MARKER).unlink(
        missing_ok=True
    )  # a failed earlier resume of this run is superseded

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics["num_parameters"] = module.num_parameters()  # read by the report
    metrics["train_time_s"] = time.perf_counter() - start
    log.info(metrics_table(metrics, Path(cfg.paths.output_dir, "metrics.yaml")))
    if trainer.is_global_zero:  # under DDP every rank gets here; one writes
        status = {"status": str(interrupted)} if interrupted else {}  # the report lists it as incomplete
        write_yaml_atomic(Path(cfg.paths.output_dir, "metrics.yaml"), {**metrics, **status})
        log.info(where_lines(cfg.paths.output_dir))
    if interrupted:
        raise interrupted
    objective = cfg.get("optimized_metric")
    if objective and trainer.is_global_zero and objective not in metrics:  # rank-0-only metrics: ask rank 0
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
