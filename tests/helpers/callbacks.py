"""Test-only callbacks, instantiated by the real entry point through
``+callbacks.<name>._target_=tests.helpers.callbacks.<Class>``."""

from __future__ import annotations

import os
import signal

import lightning.pytorch as pl
import torch


class KillAt(pl.Callback):
    """SIGKILL this process right after optimizer step ``step``: no handler, no end-of-fit save runs,
    exactly what a pre-empted or OOM-killed job leaves behind."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAt(pl.Callback):
    """Send ``sig`` to this process right after optimizer step ``step`` (once): a deterministic SIGTERM or
    Ctrl-C at a known point, instead of sleeping and hoping the run got there."""

    def __init__(self, step: int, sig: str = "SIGTERM") -> None:
        self.step, self.sig, self.sent = step, getattr(signal, sig), False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            if self.sig == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with SIGINT ignored
            os.kill(os.getpid(), self.sig)


class SignalInValidation(pl.Callback):
    """SIGTERM this process as the first batch of the first end-of-epoch validation starts (not the sanity check):
    the signal arrives while a validation step runs."""

    def __init__(self) -> None:
        self.sent = False

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if not trainer.sanity_checking and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


class PoisonAt(pl.Callback):
    """Make the network's weights NaN right after optimizer step ``step`` (a diverged update)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class RecordBatches(pl.Callback):
    """Append one fingerprint per trained image to ``path`` (which samples an epoch trained on)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: tuple, *args: object
    ) -> None:
        x = batch[0].flatten(1).double()  # (B, 784)
        weights = torch.arange(1, x.shape[1] + 1, dtype=torch.float64)
        with open(self.path, "a") as f:
            f.writelines(f"{v:.6f}\n" for v in (x * weights).sum(1).tolist())


class StepFile(pl.Callback):
    """Write ``trainer.global_step`` to ``path`` after each training batch (atomically: write, then rename),
    so a test can wait for a state ("at least k optimizer steps done") instead of for time."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            f.write(str(trainer.global_step))
        os.replace(tmp, self.path)
