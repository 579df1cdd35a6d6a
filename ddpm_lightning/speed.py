"""Per-device speed defaults (``speed=auto``, the default preset): what ``make bench`` measured fastest.

Resolved when the trainer is built, from ``trainer.accelerator`` and the hardware torch sees:

| option | CPU | GPU |
|---|---|---|
| precision | ``bf16-mixed`` where the CPU has native bf16 (1), else ``32-true`` | per network width (3) |
| data on the device | ``false`` (nothing to move) | ``true`` (batches gathered on the GPU) (2) |
| float32 matmul precision | ``null`` (torch's ``highest``) | ``high`` (TF32 matmuls) |

(1) AVX512-BF16 or AMX; ~1.8-2x the float32 step on this project's Zen 4.
(2) unless ``data.num_workers`` > 0.
(3) ``gpu_precision``: ``32-true`` (TF32 matmuls and convolutions) for networks no wider than
``GPU_FLOAT32_MAX_WIDTH`` channels, else ``bf16-mixed`` (``16-mixed`` on GPUs without bf16).

``speed=exact`` turns all of them off: float32, host data, the study's numerics exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ddpm_lightning.core.errors import DDPMError

OPTIONS = ("precision", "on_device", "float32_matmul_precision")

# Measured on one H200 (torch 2.11, `make bench --device cuda`, section 6, batch 128): the study's small CNN
# (widest layer 32 channels, 61 GFLOP/step) trains ×1.19 faster in float32 (TF32) than under bf16 autocast:
# a network this small is bound by kernel launches and memory traffic, and autocast adds a cast per layer.
# The large CNN (256 channels, 2.4 TFLOP/step, 40× the work) is matmul-bound, where bf16 doubles TF32's
# peak: bf16. `make bench-gpu`'s per-size precision table checks both sides of this line.
GPU_FLOAT32_MAX_WIDTH = 64


def uses_gpu(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` setting puts this run on a CUDA GPU."""
    import torch  # here, not at the top: the CLI checks overrides before torch is imported

    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def cpu_has_native_bf16() -> bool:
    import torch

    cpu = torch.cpu
    return bool(
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )


def gpu_precision(channels: Sequence[int] | None = None) -> str:
    """The faster training precision on a GPU for a network whose layers have ``channels`` (None: unknown,
    treated as large): float32 (TF32) up to ``GPU_FLOAT32_MAX_WIDTH`` channels, else bf16 autocast."""
    import torch

    if channels is not None and len(channels) > 0 and max(int(c) for c in channels) <= GPU_FLOAT32_MAX_WIDTH:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def auto_option(accelerator: str, option: str, arg: Any = None) -> Any:
    """The fastest measured value of speed ``option`` for a run on ``accelerator``. ``arg``: for ``precision``
    the network's ``capacity.channels``; for ``on_device`` the data loader's ``num_workers`` (data on the
    device needs none, so asking for workers keeps the data in host memory)."""
    if option not in OPTIONS:
        raise DDPMError(f"unknown speed option {option!r}; valid choices: {', '.join(OPTIONS)}")
    gpu = uses_gpu(str(accelerator))
    if option == "precision":
        return gpu_precision(arg) if gpu else ("bf16-mixed" if cpu_has_native_bf16() else "32-true")
    if option == "float32_matmul_precision":
        return "high" if gpu else None
    return gpu and int(arg or 0) == 0  # on_device
