"""Hydra callbacks (``hydra.callbacks`` in conf/hydra/default.yaml): a multirun prints its sweep directory,
the folder ``report`` takes, at its start and at its end, with the commands that open it."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def sweep_lines(sweep_dir: str | Path, task_name: str) -> str:
    d = shlex.quote(str(Path(sweep_dir).resolve()))
    lines = [f"sweep directory: {d}  (one folder per job: 0/, 1/, ...)"]
    if task_name == "train":
        lines += [
            f"  report:      python -m ddpm_lightning.report {d}",
            f"  TensorBoard: tensorboard --logdir {d}  (the HParams tab compares the runs)",
        ]
    return "\n".join(lines)


class SweepInfo(Callback):
    """Prints where a multirun writes (start) and where its results are (end)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        log.info(sweep_lines(config.hydra.sweep.dir, str(config.get("task_name", ""))))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        log.info("sweep done; " + sweep_lines(config.hydra.sweep.dir, str(config.get("task_name", ""))))
