"""Loading a DiffusionModule back from a checkpoint, safely.

Checkpoints are read with ``torch.load(weights_only=True)``: no code from the file is executed.
The resolved run config stored in the checkpoint rebuilds the network, schedule and degradation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.module import CONFIG_KEY, DiffusionModule


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded without executing code from the file."""
    path = Path(path)
    if not path.is_file():
        raise DDPMError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for files that need arbitrary code, EOFError if truncated
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DDPMError(f"cannot load checkpoint {path} safely (weights_only=True): {first}") from None


def build_module(cfg: DictConfig, run_config: dict[str, Any] | None = None) -> DiffusionModule:
    """Instantiate the DiffusionModule a (train) config describes."""
    schedule = instantiate(cfg.schedule)
    return DiffusionModule(
        network=instantiate(cfg.model),
        schedule=schedule,
        degradation=instantiate(cfg.degradation),
        sampler=instantiate(cfg.sampler),
        optimizer=instantiate(cfg.optimizer),
        run_config=run_config,
        **cfg.get("module", {}),
    )


def load_module(path: str | Path, use_ema: bool = True) -> tuple[DiffusionModule, DictConfig]:
    """(module in eval mode, its run config) from a checkpoint written by ``train``."""
    ckpt = read_checkpoint(path)
    if CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise DDPMError(f"{path} is not a ddpm_lightning checkpoint (no '{CONFIG_KEY}' or 'state_dict')")
    run_config = ckpt[CONFIG_KEY]
    cfg = OmegaConf.create(run_config)
    module = build_module(cfg, run_config)
    state = ckpt["state_dict"]
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise DDPMError(f"checkpoint {path} does not match its model config: {str(e).splitlines()[0]}") from None
    module.eval()
    return module, cfg
