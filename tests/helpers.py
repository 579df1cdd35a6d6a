"""Test-only callbacks, instantiated by the real entry point through ``+callbacks.<name>._target_=...``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl


class KillAt(pl.Callback):
    """SIGKILL this process right after optimizer step ``step``: no handler, no end-of-fit save runs,
    exactly what a pre-empted or OOM-killed job leaves behind."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


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


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 240) -> bool:
    """Poll ``predicate`` (a state: a file, a step count) until it holds, ``proc`` exits or ``timeout``
    seconds pass (a bound against hangs, not a guess at speed). Returns whether the state was reached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def read_step(path: Path) -> int:
    """The step a ``StepFile`` last wrote, or -1 if none yet."""
    return int(path.read_text()) if path.is_file() else -1
