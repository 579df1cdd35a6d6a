"""Pure-torch diffusion core: imports neither Lightning nor Hydra."""

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.schedules import NoiseSchedule

__all__ = ["DDPMError", "NoiseSchedule"]
