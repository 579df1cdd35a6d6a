"""Surviving pre-emption: atomic checkpoint files, RNG state in checkpoints, a checkpoint on interrupt.

- ``AtomicCheckpointIO``: writes ``<file>.tmp`` in the same directory, fsyncs, then ``os.replace``s it,
  so a kill during saving never leaves a truncated checkpoint that resume would pick up. Loads with
  ``weights_only=True`` (no code from the file is executed).
- ``RNGStateCheckpoint``: stores the torch / CUDA / numpy / python RNG states in each checkpoint and
  restores them when training resumes (at train start, after the sanity check), so "1 epoch + resume
  for 1" draws the same timesteps and noise as "2 epochs straight".
- ``InterruptCheckpoint``: on SIGTERM or Ctrl-C, saves ``last.ckpt`` before the process exits.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
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
    states["numpy"] = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}
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

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = _rng_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get("rng_states")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:  # after the sanity check, which consumes RNG of its own
            _set_rng_states(self._pending)
            self._pending = None


class InterruptCheckpoint(pl.Callback):
    """Save ``<dirpath>/last.ckpt`` when training is interrupted by SIGTERM or Ctrl-C (KeyboardInterrupt)."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: optimizer, loops, callbacks
        log.warning("interrupted (%s): saved %s at step %d; resume with ckpt_path=%s",
                    type(exception).__name__, self.path, trainer.global_step, self.path)

