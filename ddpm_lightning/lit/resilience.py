"""Surviving pre-emption: atomic checkpoint files, RNG state in checkpoints, a checkpoint on interrupt.

- ``AtomicCheckpointIO``: writes ``<file>.tmp`` in the same directory, fsyncs, then ``os.replace``s it,
  so a kill during saving never leaves a truncated checkpoint that resume would pick up. Loads with
  ``weights_only=True`` (no code from the file is executed).
- ``RNGStateCheckpoint``: stores the torch / CUDA / numpy / python RNG states in each checkpoint and
  restores them when training resumes (at train start, after the sanity check), so "1 epoch + resume
  for 1" draws the same timesteps and noise as "2 epochs straight".
- ``InterruptCheckpoint``: on SIGTERM or Ctrl-C, saves ``last.ckpt`` before the process exits; a SIGTERM
  during the end-of-epoch validation lets that validation finish first, so its metrics are kept.
- ``RunInterrupted`` (core/errors.py): what ``train`` raises after such an interrupt; the entry point exits with its
  status (SIGTERM 143 = 128 + 15, Ctrl-C 130 = 128 + 2), so schedulers and scripts see the run did not finish.
- ``OptimizerOverrides``: on resume, applies the configured optimizer hyperparameters (``optimizer.lr``, ...)
  to the restored optimizer, and says so, instead of keeping the checkpoint's silently.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ddpm_lightning.utils import atomic_open

log = logging.getLogger(__name__)

TMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")  # .<name>.tmp-<pid>: a save in progress, or left by a SIGKILL


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp_files(directory: Path) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>`` files whose writer process is gone (a SIGKILL during a save)."""
    removed = []
    for p in directory.glob(".*.tmp-*") if directory.is_dir() else []:
        m = TMP_RE.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _non_finite_entries(checkpoint: dict[str, Any]) -> list[str]:
    state = checkpoint.get("state_dict") or {}
    return [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    def __init__(self) -> None:
        super().__init__()
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        bad = _non_finite_entries(checkpoint)
        if bad:  # the step's update made the weights NaN/inf: keep the last good checkpoint instead
            from ddpm_lightning.lit.module import NonFiniteLossError

            raise NonFiniteLossError(
                f"non-finite weights at global step {checkpoint.get('global_step')} ({', '.join(bad[:3])}); "
                f"{path.name} not written, the last good checkpoint is kept"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._cleaned:  # once per directory: leftovers of a SIGKILLed save
            remove_stale_tmp_files(path.parent)
            self._cleaned.add(path.parent)
        with atomic_open(path) as f:  # atomic on POSIX: readers see the old file or the new one
            torch.save(checkpoint, f)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location or "cpu", weights_only=True)


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(legacy=True),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    # numpy's legacy state holds a str and ndarray; store plain types so weights_only loading works
    name, keys, pos, has_gauss, cached = states["numpy"]
    states["numpy"] = {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }
    version, internal, gauss = states["python"]
    states["python"] = {"version": version, "internal": list(internal), "gauss": gauss}
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RNGStateCheckpoint(pl.Callback):
    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["rng_states"] = _rng_states()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = checkpoint.get("rng_states")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:  # after the sanity check, which consumes RNG of its own
            _set_rng_states(self._pending)
            self._pending = None


class InterruptCheckpoint(pl.Callback):
    """Save ``<dirpath>/last.ckpt`` when training is interrupted by SIGTERM or Ctrl-C (KeyboardInterrupt)."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self._deferred = False

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        # Lightning stops validation at the next batch after a SIGTERM, losing that epoch's validation
        # metrics; defer the stop to the end of validation (the epoch-end checkpoint then has them too)
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None and connector.received_sigterm and not trainer.sanity_checking:
            connector.received_sigterm = False
            self._deferred = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._deferred:
            trainer._signal_connector.received_sigterm = True  # the training loop stops at its next check
            self._deferred = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: optimizer, loops, callbacks
        log.warning(
            "interrupted (%s): saved %s at step %d; resume with ckpt_path=%s",
            type(exception).__name__,
            self.path,
            trainer.global_step,
            self.path,
        )


class OptimizerOverrides(pl.Callback):
    """On resume, set the configured hyperparameters (lr, betas, ...) in the restored optimizer's param groups.

    Lightning restores the optimizer state with the checkpoint's values; without this, ``optimizer.lr=...``
    on a resume would be stored in the run's config but silently not used."""

    KEYS = ("lr", "betas", "eps", "weight_decay", "momentum")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = {k: v for k, v in values.items() if k in self.KEYS}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                for key, value in self.values.items():
                    if key in group and group[key] != value:
                        log.warning(
                            "resume: optimizer.%s %s -> %s (the configured value is applied)", key, group[key], value
                        )
                        group[key] = value
