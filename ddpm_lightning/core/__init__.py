"""Pure-torch diffusion core: imports neither Lightning nor Hydra."""

from typing import Any

from ddpm_lightning.core.errors import DDPMError

__all__ = ["DDPMError", "NoiseSchedule"]


def __getattr__(
    name: str,
) -> Any:  # NoiseSchedule on first use: importing DDPMError must not import torch (CLI start-up)
    if name == "NoiseSchedule":
        from ddpm_lightning.core.schedules import NoiseSchedule

        return NoiseSchedule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
