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
from ddpm_lightning.utils import first_line, pick_device


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded without executing code from the file."""
    path = Path(path)
    if path.is_dir():
        found = sorted(str(p.relative_to(path)) for p in path.rglob("*.ckpt"))[:3]
        hint = f"; checkpoints inside: {', '.join(found)}" if found else ""
        raise DDPMError(f"checkpoint {path} is a directory, not a checkpoint file (e.g. <run>/checkpoints/last.ckpt){hint}")
    if not path.is_file():
        raise DDPMError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save: a zip archive (or a legacy pickle)
        raise DDPMError(f"{path} is not a PyTorch checkpoint (starts with {head!r}, not a zip archive written by torch.save)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for files that need arbitrary code, EOFError if truncated
        raise DDPMError(f"cannot load checkpoint {path} safely (weights_only=True): {first_line(e)}") from None


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
    """(module in eval mode, its run config) from a checkpoint written by ``train``.

    With ``callbacks=ema`` the checkpoint's ``state_dict`` holds the EMA weights (Lightning's
    EMAWeightAveraging) and ``current_model_state`` the raw ones; ``use_ema=False`` loads the raw ones."""
    ckpt = read_checkpoint(path)
    if CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise DDPMError(f"{path} is not a ddpm_lightning checkpoint (no '{CONFIG_KEY}' or 'state_dict')")
    run_config = ckpt[CONFIG_KEY]
    cfg = OmegaConf.create(run_config)
    module = build_module(cfg, run_config)
    state = ckpt["state_dict"]
    if not use_ema and "current_model_state" in ckpt:
        state = ckpt["current_model_state"]
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise DDPMError(f"checkpoint {path} does not match its model config: {first_line(e)}") from None
    module.eval()
    return module, cfg


def load_for_sampling(path: str | Path, device: str | None = None, precision: str | None = None) -> tuple[DiffusionModule, torch.device]:
    """The checkpoint's module (EMA weights if any) on ``device`` (None: cuda if available, else cpu),
    sampling in ``precision`` (None: the checkpoint's own ``sample_precision``): what sample/evaluate run."""
    module, _ = load_module(path)
    dev = pick_device(device)
    module.to(dev)
    if precision:
        module.set_sample_precision(str(precision))
    return module, dev


# The parts of the config that define the weights' shapes and meaning: resuming across them is an error.
MODEL_KEYS = ("T", "schedule", "capacity", "model", "degradation")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def check_compatible(path: str | Path, run_config: dict[str, Any]) -> None:
    """Raise a one-line DDPMError if the checkpoint was trained with another model config."""
    saved = read_checkpoint(path).get(CONFIG_KEY)
    if saved is None:
        raise DDPMError(f"{path} is not a ddpm_lightning checkpoint (no '{CONFIG_KEY}')")
    old = _flatten({k: saved.get(k) for k in MODEL_KEYS})
    new = _flatten({k: run_config.get(k) for k in MODEL_KEYS})
    diffs = [f"{k}={old.get(k)!r} (now {new.get(k)!r})" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        raise DDPMError(f"checkpoint {path} was trained with a different model config: {'; '.join(diffs[:4])}")
