"""Degradations: what the forward process does to x0 at step t and what the network learns.

A degradation answers, for the Lightning module and the samplers:
- ``training_example(x0, t, schedule)``: the degraded input z_t and the network's regression target
  (what the forward process does to x0 at step t, and what the network learns), with the batch's
  statistics worth logging (``TrainingExample.stats``);
- ``prediction``: what that target is ("eps": the noise added, "x0": the clean image); a sampler
  inverts only a degradation with the same ``prediction`` (the module checks it);
- ``noise_scale``: the scale of the noise at sampling time (z_T ~ N(0, s²·I), each step's noise × s);
- ``prior(shape)``: where sampling starts, z_T (Gaussian: s·ε; Cold Diffusion: a fully degraded image).

Callers use these through ``process.DiffusionProcess``, which pairs the degradation with its schedule.

Gaussian DDPM (Ho et al. 2020) is one implementation; DES scales the noise by sigmoid(entropy).
Deterministic degradations (Cold Diffusion) live in ``cold.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ddpm_lightning.core.entropy import batch_entropy, image_entropy
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.schedules import NoiseSchedule


def randn(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal noise drawn from ``generator`` (on its own device) and moved next to ``like``."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


@dataclass(frozen=True)
class TrainingExample:
    """What one training batch becomes: unpacks as ``z_t, target = example`` (each (B, C, H, W));
    ``stats``: the batch's scalars worth logging (DES: ``entropy`` and ``scale``), empty for most."""

    z_t: Tensor
    target: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.z_t, self.target))


class Degradation(nn.Module):
    """Base class. Subclasses implement ``training_example`` (and ``prior`` if z_T is not s·ε)."""

    prediction: Literal["eps", "x0"] = "eps"

    def training_example(
        self, x0: Tensor, t: Tensor, schedule: NoiseSchedule, generator: torch.Generator | None = None
    ) -> TrainingExample:
        """(z_t, target), both (B, C, H, W), for clean images x0 (B, C, H, W) and steps t (B,)."""
        raise NotImplementedError

    @property
    def noise_scale(self) -> float:
        """Scale s of z_T and of every injected noise at sampling time (1 for plain DDPM)."""
        return 1.0

    def prior(self, shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
        """The starting point z_T of sampling, on ``like``'s device: s·ε, ε ~ N(0, I), s = ``noise_scale``."""
        return self.noise_scale * randn(shape, generator, like)


class Gaussian(Degradation):
    """Standard DDPM noise: z_t = √ᾱ_t·x0 + √(1−ᾱ_t)·s·ε (Ho et al. 2020, eq. 4), s = 1.

    The network predicts the noise actually added, s·ε (Algorithm 1).
    """

    prediction = "eps"

    def scale(self, x0: Tensor) -> Tensor:
        """Noise scale s for this batch, broadcastable to x0. Gaussian DDPM: 1."""
        return self.scale_with_stats(x0)[0]

    def scale_with_stats(self, x0: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(s, the statistics it was computed from, for logging). Gaussian DDPM: (1, {})."""
        return x0.new_ones(()), {}

    def corrupt(self, x0: Tensor, t: Tensor, noise: Tensor, schedule: NoiseSchedule) -> Tensor:
        """Closed-form forward process q(z_t | x0) given the (already scaled) noise."""
        a = schedule.at(schedule.sqrt_alpha_bars, t)  # (B, 1, 1, 1), √ᾱ_t precomputed in float64
        b = schedule.at(schedule.sqrt_one_minus_alpha_bars, t)  # (B, 1, 1, 1), √(1−ᾱ_t)
        return a * x0 + b * noise

    def training_example(
        self, x0: Tensor, t: Tensor, schedule: NoiseSchedule, generator: torch.Generator | None = None
    ) -> TrainingExample:
        s, stats = self.scale_with_stats(x0)
        noise = s * randn(tuple(x0.shape), generator, x0)  # (B, C, H, W)
        return TrainingExample(self.corrupt(x0, t, noise, schedule), noise, stats)


class EntropyScaled(Gaussian):
    """DES, Diffusion with Entropy Scale: z_t = √ᾱ_t·x0 + √(1−ᾱ_t)·s·ε, target s·ε (the noise added).

    H = −Σ p·log2 p of the 256-bin histogram of the pixel values over their own min..max
    (``entropy.histogram_entropy``), s = sigmoid((H − offset) / temperature); the defaults
    (offset 0, temperature 1) give exactly s = sigmoid(H), so 0.5 ≤ s < 1 for H in [0, 8] bits.
    ``per_image=False`` (``des``): H of the whole batch's pixel values, one s per batch.
    ``per_image=True`` (``des_image``): H and s per image (vectorised, no loop over images).

    Sampling has no batch to measure, so the scale used there is recorded during training: the
    cumulative mean of s over all training batches (per-image s averaged within each batch), kept
    in the ``running_scale`` buffer and therefore stored in checkpoints. s depends only on the data,
    never on the network, so a plain mean is the right estimate (no decay). It scales z_T and every
    step's noise (``noise_scale``; see ``samplers.py``). ``sample_scale`` overrides it explicitly.
    The statistics are updated only in training mode, on the device, without host synchronisation.
    """

    running_scale: Tensor
    num_batches: Tensor

    def __init__(
        self,
        per_image: bool = False,
        temperature: float = 1.0,
        offset: float = 0.0,
        bins: int = 256,
        sample_scale: float | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise DDPMError(f"degradation.temperature must be > 0, got {temperature!r}")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise DDPMError(f"degradation.bins must be an integer >= 2, got {bins!r}")
        if sample_scale is not None and not sample_scale > 0:
            raise DDPMError(f"degradation.sample_scale must be > 0 or null, got {sample_scale!r}")
        self.per_image = per_image
        self.temperature = temperature
        self.offset = offset
        self.bins = bins
        self.sample_scale = sample_scale
        self.register_buffer("running_scale", torch.ones(()))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))

    def scale_with_stats(self, x0: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """s = sigmoid((H − offset)/temperature): () for the batch, (B, 1, 1, 1) per image; and the
        batch's mean entropy H and mean scale s (``entropy``, ``scale``), 0-dim on the device."""
        if self.per_image:
            h = image_entropy(x0, self.bins)  # (B,)
        else:
            h = batch_entropy(x0, self.bins)  # ()
        s = torch.sigmoid((h - self.offset) / self.temperature)
        if self.training:  # cumulative mean of s over training batches, without a host sync
            self.num_batches += 1
            self.running_scale += (s.mean() - self.running_scale) / self.num_batches
        stats = {"entropy": h.mean(), "scale": s.mean()}
        return (s.view(-1, 1, 1, 1) if self.per_image else s), stats

    @property
    def noise_scale(self) -> float:
        if self.sample_scale is not None:
            return float(self.sample_scale)
        return float(self.running_scale)
