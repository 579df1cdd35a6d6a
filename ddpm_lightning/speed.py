"""Per-device speed defaults (``speed=auto``, the default preset): what ``make bench`` measured fastest.

Resolved when the trainer is built, from ``trainer.accelerator`` and the hardware torch sees:

| option | CPU | GPU |
|---|---|---|
| precision | ``bf16-mixed`` where the CPU has native bf16 (1), else ``32-true`` | ``bf16-mixed`` (3) |
| data on the device | ``false`` (nothing to move) | ``true`` (batches gathered on the GPU) (2) |

(1) AVX512-BF16 or AMX; ~1.8-2x the float32 step on this project's Zen 4.
(2) unless ``data.num_workers`` > 0.
(3) ``16-mixed`` on GPUs without bf16.

``speed=exact`` turns all of them off: float32, host data, the study's numerics exactly.
"""

from __future__ import annotations

from typing import Any

from ddpm_lightning.core.errors import DDPMError

OPTIONS = ("precision", "on_device")


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


def auto_option(accelerator: str, option: str, num_workers: int = 0) -> Any:
    """The fastest measured value of speed ``option`` for a run on ``accelerator`` (``num_workers``: the
    data loader's; data on the device needs none, so asking for workers keeps the data in host memory)."""
    if option not in OPTIONS:
        raise DDPMError(f"unknown speed option {option!r}; valid choices: {', '.join(OPTIONS)}")
    gpu = uses_gpu(str(accelerator))
    if option == "precision":
        if gpu:
            import torch

            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    return gpu and int(num_workers) == 0  # on_device
