"""Count device→host value reads per training step: the host synchronisations a GPU step would wait on.

On a GPU every read of a tensor's value from Python (``loss.item()``, ``if not torch.isfinite(loss)``,
``float(x)``, ``x.tolist()``, a boolean-mask index, ``x.cpu()``) makes the host wait until the queued
kernels have run, so the next step cannot be queued behind the current one. ``torch.cuda`` has a
sync-debug mode for this, but only on a GPU; ``HostReads`` (a ``TorchFunctionMode``) sees the same reads
on any device, CPU included, so a CPU test can keep them out of the steady-state step.

``CountHostSyncs`` is a Lightning callback: it counts the reads of each training step (from one
``on_train_batch_start`` to the next: ``training_step``, backward, the optimizer, every callback's batch
hooks, logging, the next batch's fetch), outside validation, with the call site of each read.
"""

from __future__ import annotations

import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch.overrides import TorchFunctionMode

# Tensor methods that hand a value to Python (or need one to shape their result): each waits for the device.
READS = frozenset(
    {
        "item",
        "tolist",
        "numpy",
        "__bool__",
        "__float__",
        "__int__",
        "__index__",
        "__complex__",
        "__format__",
        "__array__",
        "is_nonzero",
        "nonzero",
        "masked_select",
        "equal",
        "allclose",
        "unique",
    }
)
# Host tensors by design on every device (Adam's step count lives on the CPU unless ``capturable``):
# reading them never waits for a GPU, so reads made inside these modules are not counted.
HOST_SIDE = ("torch/optim/",)


def _is_read(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if name in READS:
        return True
    if name == "__getitem__" and len(args) > 1:  # x[mask]: the result's size is the mask's count
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
    if name in ("cpu", "to") and args and isinstance(args[0], torch.Tensor) and args[0].device.type != "cpu":
        target = kwargs.get("device", args[1] if len(args) > 1 else None)
        return name == "cpu" or str(target).startswith("cpu")
    return False


def _call_site() -> str:
    """file:line of the code that asked for the value: the innermost frame outside torch, or the torch.optim
    frame when the optimizer itself reads (``HOST_SIDE``)."""
    for frame in reversed(traceback.extract_stack()):
        name = frame.filename.replace("\\", "/")
        if any(h in name for h in HOST_SIDE):
            return name.split("site-packages/")[-1]
        if "/torch/" not in name and frame.filename != __file__:
            return f"{name.split('site-packages/')[-1]}:{frame.lineno}"
    return "?"


@dataclass
class Step:
    """One training step's reads: ``periodic`` when it logs, redraws the progress bar or ends the epoch."""

    global_step: int
    batch_idx: int
    periodic: bool
    sites: dict[str, int] = field(default_factory=dict)

    @property
    def reads(self) -> int:
        return sum(self.sites.values())


class HostReads(TorchFunctionMode):
    """Counts the value reads made while active (``counting``), with their call sites in ``sites``."""

    def __init__(self) -> None:
        super().__init__()
        self.counting = True
        self.sites: Counter[str] = Counter()

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.counting and _is_read(getattr(func, "__name__", ""), args, kwargs):
            site = _call_site()
            if not any(h in site for h in HOST_SIDE):
                self.sites[site] += 1
        return func(*args, **kwargs)


class CountHostSyncs(pl.Callback):
    """Value reads per training step: ``steps`` holds one ``Step`` per training step.

    Some steps read by design: every ``trainer.log_every_n_steps`` steps the logger writes the step's values,
    every ``refresh_rate`` batches the progress bar redraws, and the last batch of an epoch runs the epoch-end
    hooks. ``steady`` holds the other steps after the first ``warmup`` ones: the reads of a steady step slow
    every step of a long run."""

    def __init__(self, warmup: int = 1) -> None:
        self.warmup = warmup
        self.mode: HostReads | None = None
        self.steps: list[Step] = []
        self._open: Step | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.mode = HostReads()
        self.mode.counting = False
        self.mode.__enter__()

    def _close(self, periodic: bool = False) -> None:
        if self.mode is not None and self._open is not None:
            self._open.sites = dict(self.mode.sites)
            self._open.periodic |= periodic
            self.steps.append(self._open)
            self.mode.sites.clear()
        self._open = None
        if self.mode is not None:
            self.mode.counting = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        self._close()
        if self.mode is None:
            return
        self.mode.sites.clear()
        refresh = getattr(trainer.progress_bar_callback, "refresh_rate", 0) or 0
        logs = (trainer.global_step + 1) % max(1, trainer.log_every_n_steps) == 0
        redraws = refresh > 0 and (idx + 1) % refresh == 0
        self._open = Step(trainer.global_step, idx, logs or redraws)
        self.mode.counting = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close(periodic=True)  # the epoch's last step ends here; validation is not a training step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close(periodic=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._exit()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._exit()

    def _exit(self) -> None:
        self._close(periodic=True)
        if self.mode is not None:
            self.mode.__exit__(*sys.exc_info())
            self.mode = None

    @property
    def steady(self) -> list[Step]:
        return [s for s in self.steps[self.warmup :] if not s.periodic]

    def summary(self) -> dict[str, Any]:
        """reads_per_steady_step (the most of any steady step), reads_per_step_mean (all steps after warm-up)
        and the ten busiest call sites."""
        counted = self.steps[self.warmup :]
        sites: Counter[str] = Counter()
        for step in counted:
            sites.update(step.sites)
        steady = [s.reads for s in self.steady]
        return {
            "steps": len(self.steps),
            "steady_steps": len(steady),
            "reads_per_steady_step": max(steady) if steady else None,
            "reads_per_step_mean": sum(s.reads for s in counted) / len(counted) if counted else None,
            "sites": dict(sites.most_common(10)),
        }
