"""Test-only callbacks, instantiated by the real entry point through ``+callbacks.<name>._target_=...``."""

from __future__ import annotations

import os
import signal

import lightning.pytorch as pl


class KillAt(pl.Callback):
    """SIGKILL this process right after optimizer step ``step``: no handler, no end-of-fit save runs,
    exactly what a pre-empted or OOM-killed job leaves behind."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
