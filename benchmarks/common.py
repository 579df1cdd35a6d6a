"""Shared pieces of the benchmark: devices, clocks, interleaved repetitions, the composed train config."""

from __future__ import annotations

import copy
import functools
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.utils import pick_device

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
EPOCH_STEPS = 468  # 60,000 MNIST training images // batch 128 (drop_last)

# Per-epoch evaluation callbacks: measured by the sampling/evaluation sections, not the training step.
EVAL_CALLBACKS = ("sample_grid", "generative_metrics", "denoising_metrics")


def quiet() -> None:
    """Silence Lightning's info lines and warnings (tiny runs trigger 'few batches' notices)."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torch._dynamo", "torch._inductor"):
        logging.getLogger(name).setLevel(logging.ERROR)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return pick_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no GPU; use --device cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock intervals measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: Sequence[float]) -> list[float]:
    """[min, max] of the repetitions."""
    return [float(min(xs)), float(max(xs))] if xs else []


def interleaved(runs: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Run each measurement ``reps`` times, alternating (order rotated every repetition), so slow drift
    of the machine (other jobs, thermal) lands on all of them alike. Returns name -> values."""
    names = list(runs)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(runs[name]())
    return out


def paired_ratios(values: dict[str, list[float]], num: str, den: str) -> list[float]:
    """Per-repetition ratio num/den (the two were measured back to back)."""
    return [a / b for a, b in zip(values[num], values[den])]


def compose_train(overrides: Sequence[str], output_dir: str | os.PathLike) -> DictConfig:
    """The real train config (conf/train.yaml) with ``overrides``, outside a Hydra run: the run
    directory is ``output_dir``. A copy of its own: the sections compose the same config several times
    (a compose reads ~80 yaml files: ~0.3 s of CPU), so each distinct one is composed once per process."""
    return copy.deepcopy(_composed(tuple(overrides), str(output_dir)))


@functools.cache
def _composed(overrides: tuple[str, ...], output_dir: str) -> DictConfig:
    from hydra import compose, initialize_config_dir

    import ddpm_lightning.cli  # noqa: F401  (registers the ${resume_dir:...} resolver train.yaml uses)

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[*overrides, f"paths.output_dir={output_dir}"])


def run_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def speed_overrides(device: torch.device) -> list[str]:
    """The speed preset of the device (conf/speed/): what a user gets with speed=cpu / speed=gpu."""
    return ["speed=gpu"] if device.type == "cuda" else ["speed=cpu"]


def rss_mb(peak: bool = True) -> float:
    """Peak (VmHWM) or current (VmRSS) resident set size of this process, MiB. Not ``ru_maxrss``: Linux
    carries that over from the parent across fork + exec, so a worker would report its parent's peak."""
    key = "VmHWM:" if peak else "VmRSS:"
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5) -> float:
    """Measured dense matmul rate (FLOP/s, median of ``reps``): 2·n³ per n×n @ n×n product."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        sync(device)
        rates.append(2 * n**3 / (time.perf_counter() - start))
    return median(rates)


def conv_rate(device: torch.device, dtype: torch.dtype = torch.float32, batch: int = 16, reps: int = 5) -> float:
    """Measured rate (FLOP/s, median) of a large 7×7 convolution, 128 -> 256 channels on 28×28 (``batch``):
    the study CNN's biggest layer, run by the convolution library (oneDNN / cuDNN) rather than the BLAS
    behind ``matmul_rate``; on some CPUs (MKL on AMD) the two differ by 2x and more."""
    x = torch.randn(batch, 128, 28, 28, device=device, dtype=dtype)
    conv = torch.nn.Conv2d(128, 256, 7, padding=3).to(device=device, dtype=dtype)
    flops = 2 * batch * 256 * 28 * 28 * 128 * 49
    with torch.no_grad():
        for _ in range(2):
            conv(x)
        sync(device)
        rates = []
        for _ in range(reps):
            start = time.perf_counter()
            conv(x)
            sync(device)
            rates.append(flops / (time.perf_counter() - start))
    return median(rates)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: torch.device) -> dict[str, Any]:
    import lightning

    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


class Stopwatch:
    """Elapsed seconds per benchmark section, printed as it goes (stderr stays for progress)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.start = time.perf_counter()
        self.sections: dict[str, float] = {}
        self.log = log

    def section(self, name: str, fn: Callable[[], Any]) -> Any:
        self.log(f"[{time.perf_counter() - self.start:6.0f} s] {name} ...")
        tick = time.perf_counter()
        out = fn()
        self.sections[name] = round(time.perf_counter() - tick, 1)
        self.log(f"[{time.perf_counter() - self.start:6.0f} s] {name}: {self.sections[name]:.0f} s")
        return out
