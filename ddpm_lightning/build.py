"""Objects from config: the one place that calls Hydra's ``instantiate`` for the entry points.

The entry points (train, sample, evaluate) build the module, the Trainer and a checkpoint's module here and hand
the built objects to ``lit/``, which never reads a config node's ``_target_`` itself. A DDPMError raised by a
constructor (a bad schedule, a sampler that does not fit the degradation, a value Lightning refuses) comes out
as that one-line error, not wrapped in Hydra's InstantiationException.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.checkpoint import module_node, read_checkpoint, restore_weights
from ddpm_lightning.lit.module import CONFIG_KEY, DiffusionModule
from ddpm_lightning.utils import first_line, pick_device


def build_module(cfg: DictConfig) -> DiffusionModule:
    """``instantiate(cfg.module)``: the DiffusionModule a (train) config describes, parts included; a DDPMError
    raised while building it (a bad schedule, a sampler that does not fit the degradation) comes out unwrapped."""
    node = OmegaConf.create(
        OmegaConf.to_container(cfg.module, resolve=True)
    )  # instantiate(cfg.module) would resolve cfg's groups in place
    try:
        return instantiate(node)
    except InstantiationException as e:  # Hydra wraps what the constructors raise
        if isinstance(e.__cause__, DDPMError):
            raise e.__cause__ from None
        raise


def instantiate_trainer(trainer_cfg: DictConfig, **kwargs: Any) -> pl.Trainer:
    """The Trainer; a value Lightning refuses (``trainer.max_epochs=-2``) is one line, not a Hydra traceback."""
    try:
        return instantiate(trainer_cfg, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, (MisconfigurationException, ValueError)):
            raise DDPMError(f"bad trainer setting: {first_line(cause)}") from None
        raise


def load_module(path: str | Path, use_ema: bool = True) -> tuple[DiffusionModule, DictConfig]:
    """(module in eval mode, its run config) from a checkpoint written by ``train``: the module is rebuilt from
    the checkpoint's ``module`` node, then gets its weights (the EMA ones if any, unless ``use_ema=False``)."""
    ckpt = read_checkpoint(path)
    if CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise DDPMError(f"{path} is not a ddpm_lightning checkpoint (no '{CONFIG_KEY}' or 'state_dict')")
    run_config = ckpt[CONFIG_KEY]
    module = build_module(OmegaConf.create({"module": module_node(run_config)}))
    restore_weights(module, ckpt, path, use_ema)
    return module, OmegaConf.create(run_config)


def load_for_sampling(
    path: str | Path, device: str | None = None, precision: str | None = None
) -> tuple[DiffusionModule, torch.device]:
    """The checkpoint's module (EMA weights if any) on ``device`` (None: cuda if available, else cpu),
    sampling in ``precision`` (None: the checkpoint's own ``sample_precision``): what sample/evaluate run."""
    module, _ = load_module(path)
    dev = pick_device(device)
    module.to(dev)
    if precision:
        module.set_sample_precision(str(precision))
    return module, dev
