"""Loading a DiffusionModule back from a checkpoint, safely.

Checkpoints are read with ``torch.load(weights_only=True)``: no code from the file is executed.
Every checkpoint ``train`` writes holds the run's resolved config (``ConfigInCheckpoint``); its ``module``
node (conf/train.yaml) is the DiffusionModule with its network, schedule, degradation, sampler and optimizer:
the entry points rebuild the module from it (``ddpm_lightning.build.load_module``) and ``restore_weights`` loads
the weights into it. Resuming compares that node minus ``RUNTIME_KEYS``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.module import CONFIG_KEY, DiffusionModule
from ddpm_lightning.utils import first_line


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded without executing code from the file."""
    path = Path(path)
    if path.is_dir():
        found = sorted(str(p.relative_to(path)) for p in path.rglob("*.ckpt"))[:3]
        hint = f"; checkpoints inside: {', '.join(found)}" if found else ""
        raise DDPMError(
            f"checkpoint {path} is a directory, not a checkpoint file (e.g. <run>/checkpoints/last.ckpt){hint}"
        )
    if not path.is_file():
        raise DDPMError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save: a zip archive (or a legacy pickle)
        raise DDPMError(
            f"{path} is not a PyTorch checkpoint (starts with {head!r}, not a zip archive written by torch.save)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for files that need arbitrary code, EOFError if truncated
        raise DDPMError(f"cannot load checkpoint {path} safely (weights_only=True): {first_line(e)}") from None


def module_node(run_config: dict[str, Any]) -> dict[str, Any]:
    """The ``module`` node of a checkpoint's run config. A checkpoint written before the module node held its
    parts (its ``module`` had only the runtime options) gets the node assembled from the old top-level groups."""
    node = dict(run_config.get("module") or {})
    if "_target_" in node:
        return node
    parts = {
        "network": "model",
        "schedule": "schedule",
        "degradation": "degradation",
        "sampler": "sampler",
        "optimizer": "optimizer",
    }
    return {
        "_target_": f"{DiffusionModule.__module__}.DiffusionModule",
        **{k: run_config.get(v) for k, v in parts.items()},
        "image_shape": [1, 28, 28],
        **node,
    }


class ConfigInCheckpoint(pl.Callback):
    """Stores the run's resolved config in every checkpoint (``CONFIG_KEY``): its ``module`` node rebuilds the
    module in ``sample``/``evaluate``; the rest (trainer, data, callbacks) records how the weights were trained."""

    def __init__(self, run_config: dict[str, Any]) -> None:
        self.run_config = run_config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.run_config


def restore_weights(module: DiffusionModule, ckpt: dict[str, Any], path: str | Path, use_ema: bool = True) -> None:
    """Load a checkpoint's weights into ``module`` (built from its ``module_node``) and put it in eval mode.

    With ``callbacks=ema`` the checkpoint's ``state_dict`` holds the EMA weights (Lightning's
    EMAWeightAveraging) and ``current_model_state`` the raw ones; ``use_ema=False`` loads the raw ones."""
    state = ckpt["state_dict"]
    if not use_ema and "current_model_state" in ckpt:
        state = ckpt["current_model_state"]
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise DDPMError(f"checkpoint {path} does not match its model config: {first_line(e)}") from None
    module.eval()


# The module node's keys that do not change what the weights mean: resume applies the new values (the optimizer's
# through lit/resilience.py's OptimizerOverrides). Any other difference (network, schedule with T, degradation,
# image_shape) makes resuming an error.
RUNTIME_KEYS = (
    "sampler",
    "optimizer",
    "lr_scheduler",
    "loss_weighting",
    "val_seed",
    "check_finite",
    "channels_last",
    "compile",
    "sample_precision",
)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _user_key(root: DictConfig, key: str) -> str:
    """The key a user sets for ``key``: follows whole-value interpolations, so ``module.network.channels``
    (``network: ${model}``, ``channels: ${capacity.channels}``) is ``capacity.channels``."""
    node: Any = root
    parts = key.split(".")
    for i, part in enumerate(parts):
        child = node._get_node(part) if isinstance(node, DictConfig) else None
        if child is None:
            return key
        raw = child._value()
        ref = re.fullmatch(r"\$\{([\w.]+)\}", raw) if isinstance(raw, str) else None
        if ref:
            return _user_key(root, ".".join([ref.group(1), *parts[i + 1 :]]))
        node = child
    return key


def check_compatible(path: str | Path, module_cfg: DictConfig | dict[str, Any]) -> None:
    """Raise a one-line DDPMError if the checkpoint's module node differs from ``module_cfg`` (the run's
    ``cfg.module``, or a resolved dict of it) outside ``RUNTIME_KEYS``, naming the keys a user sets."""
    saved = read_checkpoint(path).get(CONFIG_KEY)
    if saved is None:
        raise DDPMError(f"{path} is not a ddpm_lightning checkpoint (no '{CONFIG_KEY}')")
    new_node = OmegaConf.to_container(module_cfg, resolve=True) if isinstance(module_cfg, DictConfig) else module_cfg
    old = _flatten({k: v for k, v in module_node(saved).items() if k not in RUNTIME_KEYS})
    new = _flatten({k: v for k, v in new_node.items() if k not in RUNTIME_KEYS})  # type: ignore[union-attr]

    def name(key: str) -> str:
        if not isinstance(module_cfg, DictConfig):
            return key
        return _user_key(module_cfg._get_root(), f"{module_cfg._get_full_key(None)}.{key}")  # type: ignore[arg-type]

    diffs = [
        f"{name(k)}={old.get(k)!r} (now {new.get(k)!r})"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if diffs:
        raise DDPMError(f"checkpoint {path} was trained with a different model config: {'; '.join(diffs[:4])}")
