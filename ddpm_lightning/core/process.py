"""The diffusion process: one object owning the noise schedule and the degradation.

Everything the training loss and the samplers need from the forward process goes through it:

- ``training_example(x0, t, generator)``: (z_t, target), what the network sees and learns (Algorithm 1
  of Ho et al. 2020 for the Gaussian degradations, D(x0, t) and x0 for the cold ones); the batch's
  statistics worth logging (DES entropy and scale) come with it as ``.stats``;
- ``x0_from_output(z_t, t, output)``: x̂0 from the network's output, the one place this formula lives
  (ε-prediction: Ho et al. 2020, eq. 4 solved for x0; x0-prediction: the output itself);
- ``prior(shape, generator, like)``: z_T, where sampling starts (s·ε, or a fully degraded image);
- ``noise_scale``: s, the scale of z_T and of every noise a sampler injects (1 for plain DDPM; DES: the
  mean training scale).

Samplers are built from it: ``Ancestral(process)``, ``DDIM(process, num_steps=50)``, ...
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ddpm_lightning.core.degradations import Degradation, TrainingExample
from ddpm_lightning.core.schedules import NoiseSchedule


class DiffusionProcess:
    """The forward process q(z_t | x0) of ``degradation`` on ``schedule``'s T steps, and what a sampler
    needs to invert it. Holds references, not copies: moving the schedule and degradation (e.g. with the
    LightningModule that registers them) moves the process; ``to(device)`` moves both from a notebook."""

    def __init__(self, schedule: NoiseSchedule, degradation: Degradation) -> None:
        self.schedule = schedule
        self.degradation = degradation

    @property
    def T(self) -> int:
        return self.schedule.T

    @property
    def prediction(self) -> Literal["eps", "x0"]:
        """What the network predicts: "eps" (the noise added) or "x0" (the clean image)."""
        return self.degradation.prediction

    @property
    def noise_scale(self) -> float:
        """Scale s of z_T and of every injected noise at sampling time (DES: the recorded mean scale)."""
        return self.degradation.noise_scale

    def training_example(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> TrainingExample:
        """(z_t, target), each (B, C, H, W), for clean images x0 (B, C, H, W) and steps t (B,); ``.stats``
        holds the batch's scalars worth logging."""
        return self.degradation.training_example(x0, t, self.schedule, generator)

    def x0_from_output(self, z_t: Tensor, t: int | Tensor, output: Tensor) -> Tensor:
        """x̂0 (B, C, H, W) from the network's ``output`` at z_t (B, C, H, W), t an int or (B,).

        ε-prediction: z_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (Ho et al. 2020, eq. 4) solved for x0,
        x̂0 = (z_t − √(1−ᾱ_t)·ĝ)/√ᾱ_t, with both coefficients precomputed in float64 by the schedule.
        (DES: ĝ predicts s·ε, the noise actually added, so the same formula holds.)
        x0-prediction: x̂0 = ĝ.
        """
        if self.prediction == "x0":
            return output
        s = self.schedule
        if isinstance(t, Tensor):
            a, b = s.at(s.sqrt_alpha_bars, t), s.at(s.sqrt_one_minus_alpha_bars, t)  # (B, 1, 1, 1) each
        else:
            a, b = s.sqrt_alpha_bars[t], s.sqrt_one_minus_alpha_bars[t]  # () each
        return (z_t - b * output) / a

    def prior(self, shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
        """z_T (``shape``) on ``like``'s device: s·ε, ε ~ N(0, I), or the degradation's own prior (cold)."""
        return self.degradation.prior(shape, generator, like)

    def to(self, device: torch.device | str) -> DiffusionProcess:
        self.schedule.to(device)
        self.degradation.to(device)
        return self

    def __repr__(self) -> str:
        return f"DiffusionProcess(schedule={self.schedule.extra_repr()}, degradation={self.degradation!r})"
