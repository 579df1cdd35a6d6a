"""Start-up of a training run: refuse what can be refused before the Trainer writes anything, and undo
what a start-up that failed anyway wrote into the run directory (an empty TensorBoard events file in an
earlier run being resumed, say). ``run_fit`` also turns an interrupt into a ``RunInterrupted``."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from ddpm_lightning.core.errors import DDPMError, RunInterrupted
from ddpm_lightning.lit.checkpoint import read_checkpoint
from ddpm_lightning.lit.module import DiffusionModule
from ddpm_lightning.utils import first_line


def check_resumable(path: str, trainer_cfg: DictConfig) -> None:
    """Refuse to resume a checkpoint that has nothing left to train: Lightning would return at once, and
    the run's final metrics.yaml would be overwritten with empty ones."""
    ckpt = read_checkpoint(path)
    epochs = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {}).get("processed", 0)
    max_epochs, max_steps = trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps") or -1
    steps = int(ckpt.get("global_step", 0))
    if (max_epochs not in (None, -1) and epochs >= int(max_epochs)) or (max_steps > 0 and steps >= max_steps):
        raise DDPMError(
            f"checkpoint {path} has already trained {epochs} epochs ({steps} steps) and trainer.max_epochs={max_epochs}"
            f"{f', trainer.max_steps={max_steps}' if max_steps > 0 else ''}: "
            "nothing left to train (the run is kept as it is); "
            f"give trainer.max_epochs > {epochs} to train on"
        )


def check_optimizer(module: DiffusionModule, optimizer_cfg: DictConfig) -> dict[str, Any]:
    """Build the optimizer once (a bad ``optimizer.lr=-1`` fails here in one line); return its hyperparameters."""
    try:
        return dict(module.build_optimizer().defaults)
    except (ValueError, TypeError) as e:
        settings = ", ".join(f"optimizer.{k}={v}" for k, v in optimizer_cfg.items() if not str(k).startswith("_"))
        raise DDPMError(f"bad optimizer setting ({settings}): {first_line(e)}") from None


class _Started(pl.Callback):
    started = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = True


@contextmanager
def _undo_if_not_started(run_dir: Path, started: _Started) -> Iterator[None]:
    """If the block fails before training started, remove what it added under ``run_dir``."""
    before = set(run_dir.rglob("*")) if run_dir.is_dir() else set()
    try:
        yield
    except BaseException:
        if not started.started and run_dir.is_dir():
            added = set(run_dir.rglob("*")) - before
            for p in sorted(added, key=lambda q: len(q.parts), reverse=True):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        raise


def run_fit(
    trainer: pl.Trainer,
    module: DiffusionModule,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | None,
    run_dir: str,
) -> RunInterrupted | None:
    """``trainer.fit``; an interrupt (after ``InterruptCheckpoint`` saved the state) is returned, not raised,
    so the caller can write its metrics first. SIGTERM -> status 143, Ctrl-C -> 130 (128 + signal number)."""
    started = _Started()
    trainer.callbacks.append(started)
    try:
        with _undo_if_not_started(Path(run_dir), started):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        name, code = "SIGTERM", 128 + signal.SIGTERM
    except SystemExit:
        if not trainer.interrupted:  # Lightning exits with 1 after a KeyboardInterrupt (Ctrl-C)
            raise
        name, code = "SIGINT (Ctrl-C)", 128 + signal.SIGINT
    except Exception as e:
        e.training_started = started.started  # type: ignore[attr-defined]  # cli.run_task: keep or remove the folder
        raise
    else:
        return None
    if not started.started:
        raise RunInterrupted(name, code, "before training started", started=False) from None
    return RunInterrupted(name, code, f"epoch {trainer.current_epoch}, step {trainer.global_step}")
