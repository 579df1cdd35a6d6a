"""Training throughput: the Lightning path against a bare PyTorch loop, the data path, the speed options.

- ``bare_loop``: plain PyTorch with the same network, Adam, batch, noise and in-memory data as the
  module's ``training_step`` (Ho et al. 2020, Alg. 1: t ~ U{1..T}, MSE of g(z_t, t) against ε).
- ``lightning_loop``: ``Trainer.fit`` built from the real config (conf/train.yaml + the device's speed
  preset): progress bar, TensorBoard logger, checkpoint callbacks, ``check_finite``; the per-epoch
  evaluation callbacks are left out (the sampling and evaluation sections measure them).
Both report images/s over ``steps`` steps after ``warmup`` steps (``throughput``: on CPU from the median
step time, on GPU from the total time, synchronised at both ends).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from benchmarks.common import (
    EVAL_CALLBACKS,
    compose_train,
    interleaved,
    median,
    paired_ratios,
    speed_overrides,
    spread,
    sync,
)
from ddpm_lightning.build import build_module
from ddpm_lightning.core.degradations import Degradation
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.schedules import NoiseSchedule
from ddpm_lightning.lit.data import load_mnist


class BatchList:
    """Ready-made batches as one iterable (a plain list would be read as a list of dataloaders)."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        self.batches = batches

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def throughput(stamps: list[float], batch: int, device: torch.device) -> float:
    """images/s from the wall-clock stamps at the end of each timed step (and of the step before).

    CPU: ``batch`` / the median step time, so that another job's burst on a shared machine (a few slow
    steps) does not decide the number. GPU: all steps over the total time (steps are queued
    asynchronously; the clock is synchronised only at both ends)."""
    steps = len(stamps) - 1
    if steps < 1:
        raise RuntimeError("the run ended before the timed steps")
    if device.type == "cuda":
        return batch * steps / (stamps[-1] - stamps[0])
    return batch / median([b - a for a, b in zip(stamps, stamps[1:])])


class StepClock(pl.Callback):
    """Wall-clock stamps at the end of batch ``warmup − 1`` and of every later batch up to ``total − 1``:
    everything the loop does per step (data fetch, hooks, logging, progress bar, checkpoint checks)
    lies between two stamps. GPU work is synchronised at the first and the last stamp."""

    def __init__(self, warmup: int, total: int, device: torch.device) -> None:
        self.warmup, self.total, self.device = warmup, total, device
        self.stamps: list[float] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.warmup - 1 <= batch_idx <= self.total - 1:
            if batch_idx in (self.warmup - 1, self.total - 1):
                sync(self.device)
            self.stamps.append(time.perf_counter())


def lightning_loop(
    cfg: DictConfig,
    module: pl.LightningModule,
    steps: int,
    warmup: int,
    device: torch.device,
    datamodule: pl.LightningDataModule | None = None,
    batches: BatchList | None = None,
    logger: bool = True,
    drop_callbacks: tuple[str, ...] = EVAL_CALLBACKS,
) -> float:
    """images/s of ``Trainer.fit`` for ``warmup + steps`` steps of one epoch, no validation."""
    clock = StepClock(warmup, warmup + steps, device)
    callbacks = [instantiate(c) for k, c in (cfg.callbacks or {}).items() if c is not None and k not in drop_callbacks]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c is not None] if logger else False
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, clock],
        logger=loggers,
        max_epochs=1,
        limit_train_batches=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        trainer.fit(module, datamodule=datamodule, train_dataloaders=batches)
    return throughput(clock.stamps, int(cfg.data.batch_size), device)


def bare_loop(
    network: nn.Module,
    schedule: NoiseSchedule,
    degradation: Degradation,
    x: Tensor,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    bf16: bool = False,
    lr: float = 2e-4,
    seed: int = 0,
) -> float:
    """images/s of a plain PyTorch loop: shuffled batches of the in-memory images ``x`` (N, 1, 28, 28)."""
    network.train()
    process = DiffusionProcess(schedule, degradation)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed)).to(x.device)
    stamps: list[float] = []
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            stamps.append(time.perf_counter())
        j = (i * batch) % (x.shape[0] - batch + 1)
        x0 = x[perm[j : j + batch]].to(device, non_blocking=True)  # (B, 1, 28, 28)
        t = torch.randint(1, schedule.T + 1, (batch,), device=device)  # (B,)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            z_t, target = process.training_example(x0, t)  # (B, 1, 28, 28) each
            loss = F.mse_loss(network(z_t, t), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            if i == warmup + steps - 1:
                sync(device)
            stamps.append(time.perf_counter())
    return throughput(stamps, batch, device)


def synthetic_batches(n: int, batch: int, device: torch.device) -> BatchList:
    """``n`` ready-made batches of uniform noise in [−1, 1] on ``device``: a data path that costs nothing."""
    g = torch.Generator().manual_seed(0)
    return BatchList(
        [
            (
                (torch.rand(batch, 1, 28, 28, generator=g) * 2 - 1).to(device),
                torch.zeros(batch, dtype=torch.long, device=device),
            )
            for _ in range(n)
        ]
    )


def train_images(data: DictConfig) -> Tensor:
    """(N, 1, 28, 28): the training images the config's data module holds (N = 60000 unless ``data.train_subset``),
    for the bare loops, which feed them from memory."""
    return load_mnist(data.root, "train", n=data.train_subset)[0]


def _core_parts(cfg: DictConfig, device: torch.device, seed: int = 0) -> tuple[nn.Module, NoiseSchedule, Degradation]:
    torch.manual_seed(seed)
    module = build_module(cfg)
    return module.network.to(device), module.schedule.to(device), module.degradation.to(device)


def training_paths(
    device: torch.device, steps: int, warmup: int, reps: int, workdir: str, overrides: list[str]
) -> dict[str, Any]:
    """Sections 1 and 2: bare loop, the Lightning path with the real data module, the Lightning path on
    synthetic tensors (and on a GPU the data module with the data in host memory), interleaved."""
    base = [*speed_overrides(device), *overrides]
    cfg = compose_train(base, workdir)
    batch = int(cfg.data.batch_size)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    torch.manual_seed(0)
    module = build_module(cfg)
    datamodule = instantiate(cfg.data)
    x = train_images(cfg.data)  # (N, 1, 28, 28): the bare loop's in-memory data
    on_device = bool(cfg.data.on_device)
    x = x.to(device) if on_device else x
    net, schedule, degradation = _core_parts(cfg, device)
    synthetic = synthetic_batches(warmup + steps, batch, device if on_device else torch.device("cpu"))
    runs: dict[str, Callable[[], float]] = {
        "bare": lambda: bare_loop(net, schedule, degradation, x, batch, steps, warmup, device, bf16),
        "lightning": lambda: lightning_loop(cfg, module, steps, warmup, device, datamodule=datamodule),
        "lightning_synthetic": lambda: lightning_loop(cfg, module, steps, warmup, device, batches=synthetic),
    }
    if device.type == "cuda":  # the same with the data in host memory (speed option data.on_device=false)
        host_cfg = compose_train([*base, "data.on_device=false"], workdir)
        host_dm = instantiate(host_cfg.data)
        runs["lightning_host_data"] = lambda: lightning_loop(
            host_cfg, module, steps, warmup, device, datamodule=host_dm
        )
    values = interleaved(runs, reps)
    out: dict[str, Any] = {
        "config": {
            "overrides": base,
            "precision": str(cfg.trainer.precision),
            "batch": batch,
            "steps": steps,
            "warmup": warmup,
            "reps": reps,
            "data_on_device": on_device,
            "callbacks": [k for k in cfg.callbacks if k not in EVAL_CALLBACKS],
            "logger": list(cfg.logger or {}),
        },
        "images_per_s": {k: median(v) for k, v in values.items()},
        "images_per_s_range": {k: spread(v) for k, v in values.items()},
    }
    ratio = paired_ratios(values, "lightning", "bare")
    data_ratio = paired_ratios(values, "lightning", "lightning_synthetic")
    out["lightning_vs_bare"] = {"median": median(ratio), "per_rep": ratio}
    out["data_vs_synthetic"] = {"median": median(data_ratio), "per_rep": data_ratio}
    if "lightning_host_data" in values:
        r = paired_ratios(values, "lightning", "lightning_host_data")
        out["on_device_vs_host_data"] = {"median": median(r), "per_rep": r}
    out["step_s"] = batch / out["images_per_s"]["lightning"]
    return out


def overhead(
    device: torch.device, steps: int, warmup: int, reps: int, workdir: str, overrides: list[str]
) -> dict[str, Any]:
    """Lightning's fixed cost per step, measured where the network costs almost nothing (a one-layer
    CNN of width 4): ms/step of each Lightning variant minus the bare loop's. The variants switch off
    one suspect each (progress bar, logger, check_finite's host sync) to attribute the cost."""
    base = [*speed_overrides(device), *overrides, "capacity.channels=[4]"]
    cfg = compose_train(base, workdir)
    batch = int(cfg.data.batch_size)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    datamodule = instantiate(cfg.data)
    x = train_images(cfg.data)
    x = x.to(device) if cfg.data.on_device else x
    net, schedule, degradation = _core_parts(cfg, device)
    variants = {
        "lightning": [],
        "no_progress_bar": ["+trainer.enable_progress_bar=false", "~callbacks.progress_bar"],
        "no_logger": ["~logger"],
        "no_check_finite": ["module.check_finite=false"],
    }
    cfgs = {k: compose_train([*base, *v], workdir) for k, v in variants.items()}
    modules = {k: build_module(c) for k, c in cfgs.items()}
    runs: dict[str, Callable[[], float]] = {
        "bare": lambda: bare_loop(net, schedule, degradation, x, batch, steps, warmup, device, bf16)
    }
    for k in variants:
        runs[k] = lambda k=k: lightning_loop(
            cfgs[k], modules[k], steps, warmup, device, datamodule=datamodule, logger=cfgs[k].get("logger") is not None
        )
    threads = torch.get_num_threads()
    if device.type == "cpu":  # the framework's cost is Python work: one thread keeps OpenMP barriers (which other
        torch.set_num_threads(1)  # jobs on a shared machine stretch) out of the difference
    try:
        values = interleaved(runs, reps)
    finally:
        torch.set_num_threads(threads)
    ms = {k: 1e3 * batch / median(v) for k, v in values.items()}  # ms per step
    return {
        "network": "CNN channels=[4] (framework cost dominates)",
        "steps": steps,
        "reps": reps,
        "torch_threads": 1 if device.type == "cpu" else threads,
        "ms_per_step": ms,
        "overhead_ms_per_step": {k: ms[k] - ms["bare"] for k in variants},
    }


def speed_options(
    device: torch.device,
    steps: int,
    warmup: int,
    reps: int,
    workdir: str,
    overrides: list[str],
    with_compile: bool = True,
) -> dict[str, Any]:
    """Section 6: each speed option switched on its own against the device's preset, in the bare loop
    (the options act on the network and tensors, the same under Lightning): bf16 autocast,
    channels_last weights, torch.compile, thread count (CPU). images/s and ratio to the preset."""
    cfg = compose_train([*speed_overrides(device), *overrides], workdir)
    batch = int(cfg.data.batch_size)
    preset_bf16 = str(cfg.trainer.precision).startswith("bf16")
    x = train_images(cfg.data)
    x = x.to(device) if cfg.data.on_device else x
    default_threads = torch.get_num_threads()

    def run(net: nn.Module, bf16: bool, threads: int | None = None) -> Callable[[], float]:
        def go() -> float:
            if threads:
                torch.set_num_threads(threads)
            try:
                return bare_loop(net, schedule, degradation, x, batch, steps, warmup, device, bf16)
            finally:
                torch.set_num_threads(default_threads)

        return go

    net, schedule, degradation = _core_parts(cfg, device)
    runs: dict[str, Callable[[], float]] = {"preset": run(net, preset_bf16)}
    runs["precision=32-true" if preset_bf16 else "precision=bf16-mixed"] = run(
        _core_parts(cfg, device)[0], not preset_bf16
    )
    cl = _core_parts(cfg, device)[0].to(memory_format=torch.channels_last)
    runs["channels_last"] = run(cl, preset_bf16)
    compile_s = None
    if with_compile:
        compiled = _core_parts(cfg, device)[0]
        compiled.compile()
        tick = time.perf_counter()
        bare_loop(compiled, schedule, degradation, x, batch, 2, 0, device, preset_bf16)  # compiles forward and backward
        compile_s = time.perf_counter() - tick
        runs["compile"] = run(compiled, preset_bf16)
    if device.type == "cpu" and default_threads > 1:
        runs["threads=1"] = run(_core_parts(cfg, device)[0], preset_bf16, threads=1)
    values = interleaved(runs, reps)
    ips = {k: median(v) for k, v in values.items()}
    ratio = {k: median(paired_ratios(values, k, "preset")) for k in values}
    preset = {
        "precision": str(cfg.trainer.precision),
        "channels_last": bool(cfg.module.channels_last),
        "compile": bool(cfg.module.compile),
        "threads": cfg.get("threads") or default_threads,
        "data.on_device": bool(cfg.data.on_device),
    }
    return {
        "preset": preset,
        "preset_name": speed_overrides(device)[0],
        "batch": batch,
        "steps": steps,
        "reps": reps,
        "images_per_s": ips,
        "ratio_to_preset": ratio,
        "compile_warmup_s": compile_s,
        "fastest": max(ips, key=ips.get),
    }
