"""The run's TensorBoard logger: runs named by their overrides, and tag groups in the order a user reads them.

- The run's events go to ``<run dir>/tensorboard/<overrides>/`` (``schedule=geometric,capacity=large``;
  ``default`` without overrides), so TensorBoard's run selector tells sweep runs apart by what they vary
  (``0/tensorboard/schedule=linear``, ``1/tensorboard/schedule=geometric``). A resumed run keeps writing into
  the TensorBoard run it started (the one folder already there), whatever its own command line says.
- The Time Series and Scalars dashboards sort tag groups alphabetically: Lightning's ``epoch`` scalar (a
  flat line per epoch) is written as ``xaxis/epoch``, after ``train/*``, ``val/*`` and ``walltime/*``. The
  report maps steps to epochs with it (``reporting/runs.py`` reads both names and finds the run folder).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

EPOCH_TAG = "xaxis/epoch"
# overrides that say where a run writes or resumes from, not what it is
SKIP = ("hydra.", "ckpt_path", "paths.")
MAX_NAME = 120  # characters of a run name (one path component); longer ones end in a hash of the whole


def _simplify(override: str) -> str:
    """``+experiment@_global_=study_des`` -> ``experiment=study_des``."""
    key, sep, value = override.partition("=")
    return f"{key.lstrip('+~').replace('@_global_', '')}{sep}{value}"


def overrides_name(overrides: Sequence[str]) -> str:
    """The run's command-line overrides as one path component: ``schedule=geometric,capacity=large``;
    characters other than letters, digits and ``._=,+-[]@`` become ``_``; ``default`` when there are none."""
    kept = [_simplify(str(o)) for o in overrides if not _simplify(str(o)).startswith(SKIP)]
    name = re.sub(r"[^A-Za-z0-9._=,+\-\[\]@]", "_", ",".join(kept)) or "default"
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def run_version(root: str | Path, overrides: Sequence[str]) -> str:
    """The TensorBoard run folder under ``root`` (``<run dir>/tensorboard``): the one a resumed run already
    has (``""`` when its events lie in ``root`` itself, as older runs wrote them), else ``overrides_name``."""
    root = Path(root)
    if any(root.glob("events.out.tfevents.*")):
        return ""
    existing = sorted(d.name for d in root.glob("*") if d.is_dir() and any(d.glob("events.out.tfevents.*")))
    return existing[0] if len(existing) == 1 else overrides_name(overrides)


class RunTensorBoardLogger(TensorBoardLogger):
    """``TensorBoardLogger`` whose version is the run's overrides (``run_version``) and whose epoch scalar
    sorts after the metrics (``EPOCH_TAG``). ``overrides`` is filled by the entry point (train.py)."""

    def __init__(
        self,
        save_dir: str | Path,
        name: str = "tensorboard",
        version: str | None = None,
        overrides: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        if version is None:
            version = run_version(Path(save_dir, name), [str(o) for o in overrides])
        super().__init__(save_dir, name=name, version=version, **kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        renamed = {EPOCH_TAG if k == "epoch" else k: v for k, v in metrics.items()}
        super().log_metrics(renamed, step)
