"""Samplers for ε-predicting degradations, diffusers-style: ``set_timesteps`` then ``step``.

A sampler is built from a ``DiffusionProcess`` (``DDIM(process, num_steps=50)``), which gives it the
schedule, the prior z_T, the noise scale and the x̂0 formula; ``step`` returns the next sample and x̂0
(``StepOutput``, like diffusers' ``SchedulerOutput(prev_sample, pred_original_sample)``).

- ``Ancestral``: Ho et al. 2020, Algorithm 2 (σ_t² = β_t, or the posterior variance β̃_t).
- ``DDIM``: Song et al. 2021, eq. 12, on k spaced steps (``spaced_timesteps``), stochasticity η.
- ``DPMSolver`` (core/dpm_solver.py): DPM-Solver++(2M), its SDE form by default, on k spaced steps.

Noise scale s (DES): the forward process is z_t = √ᾱ_t·x0 + √(1−ᾱ_t)·s·ε and the network predicts
s·ε, so z/s follows a standard DDPM. In z space the update formulas keep the network output as is
and multiply the initial noise and every injected noise by s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ddpm_lightning.core.degradations import randn
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.schedules import NoiseSchedule

Model = Callable[[Tensor, Tensor], Tensor]


class StepOutput(NamedTuple):
    """One sampler step: the next sample z_{t_prev} and the x̂0 it was computed from, (B, C, H, W) each."""

    prev_sample: Tensor
    pred_original_sample: Tensor


SPACINGS = ("linear", "quadratic", "logsnr")


def spaced_timesteps(schedule: NoiseSchedule, k: int, spacing: str = "linear") -> list[int]:
    """k distinct timesteps from T down to 1 (descending), spaced evenly in t (``"linear"``), in √t
    (``"quadratic"``, Song et al. 2021 App. D.2) or in the log-SNR λ_t = log(√ᾱ_t/√(1−ᾱ_t)) (``"logsnr"``,
    Lu et al. 2022, DPM-Solver §3.3); the last two put more steps at low noise. Each timestep is rounded
    to the nearest integer t (in λ for logsnr), with a floor of one step between neighbours."""
    T = schedule.T
    u = torch.linspace(1, 0, k, dtype=torch.float64, device="cpu")  # (k,) host-side: 1 at T, 0 at t = 1
    if spacing == "linear":
        steps = (1 + (T - 1) * u).round().long()
    elif spacing == "quadratic":
        steps = (1 + (T - 1) * u**2).round().long()
    else:
        ab = schedule.alpha_bars[1:].to("cpu", torch.float64)  # (T,) t = 1..T, on the host whatever the device
        lam = 0.5 * (ab.log() - (1 - ab).log())  # decreasing in t
        target = lam[-1] + (1 - u) * (lam[0] - lam[-1])  # (k,) from λ_T up to λ_1
        steps = (lam[None, :] - target[:, None]).abs().argmin(dim=1) + 1
    steps = [min(int(t), T - i) for i, t in enumerate(steps.tolist())]  # room for the ones below ...
    for i in range(k - 2, -1, -1):  # ... then from the small end up: each at least one above the next
        steps[i] = max(steps[i], steps[i + 1] + 1)
    return steps


NOISE_CHUNK_ELEMENTS = 2**24  # noise drawn ahead at most: 64 MiB of float32 (42 steps at batch 500 of 28×28)


def noise_chunk(
    shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor, remaining: int
) -> list[Tensor]:
    """The noise of the next steps, each ``shape``, in one draw from ``generator`` (on its own device, the
    CPU for ``generate``) and one copy to ``like``'s device, instead of one host→device copy per step.
    On the CPU the values equal one draw per step whenever prod(shape) is a multiple of 16 (torch fills
    normals in blocks of 16; MNIST: 784 per image), so seeds give the same samples on every device."""
    numel = max(1, math.prod(shape))
    k = max(1, min(remaining, NOISE_CHUNK_ELEMENTS // numel))
    return list(randn((k, *shape), generator, like).unbind(0))  # k × (B, C, H, W)


def check_steps(schedule: NoiseSchedule, num_steps: int, eta: float, spacing: str) -> None:
    """One-line errors for the settings of a few-step sampler."""
    if spacing not in SPACINGS:
        raise DDPMError(f"sampler.spacing must be one of {list(SPACINGS)}, got {spacing!r}")
    if not isinstance(num_steps, int) or not 1 <= num_steps <= schedule.T:
        raise DDPMError(f"sampler.num_steps must be an integer in [1, T={schedule.T}], got {num_steps!r}")
    if eta < 0:
        raise DDPMError(f"sampler.eta must be >= 0, got {eta!r}")


class Sampler:
    """Base: a descending list of timesteps and a ``step`` from t to the previous timestep, for ``process``."""

    name = "sampler"
    prediction = "eps"
    clip_x0 = False  # x̂0 clipped to the data range [−1, 1] in every step (``x0_hat``); off: the formulas as written

    def __init__(self, process: DiffusionProcess) -> None:
        if process.prediction != self.prediction:
            raise DDPMError(
                f"sampler '{self.name}' needs a degradation predicting '{self.prediction}', "
                f"but '{type(process.degradation).__name__}' predicts '{process.prediction}'"
            )
        self.process = process
        self.schedule = process.schedule
        self.timesteps: list[int] = []

    def set_timesteps(self) -> None:
        raise NotImplementedError

    def x0_hat(self, z: Tensor, t: int, model_output: Tensor) -> Tensor:
        """x̂0 (B, C, H, W) from the network's output (``process.x0_from_output``), clamped to the data range
        [−1, 1] when ``clip_x0`` (Ho et al. 2020's code, ``clip_denoised``; diffusers' ``clip_sample``)."""
        x0 = self.process.x0_from_output(z, t, model_output)
        return x0.clamp(-1, 1) if self.clip_x0 else x0

    def previous(self, i: int) -> int:
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else 0

    def step(self, model_output: Tensor, t: int, t_prev: int, z: Tensor, noise: Tensor | None) -> StepOutput:
        """(z_{t_prev}, x̂0) from the network's output at z = z_t; ``noise`` (already × s) if ``needs_noise``."""
        raise NotImplementedError

    def needs_noise(self, t_prev: int) -> bool:
        return t_prev > 0

    @torch.no_grad()
    def sample(
        self,
        model: Model,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Run the whole chain from z_T = ``process.prior`` (s·ε, ε ~ N(0, I)) to z_0. Returns (B, C, H, W).

        ``callback(done, total)`` is called after each step (progress bars; it may raise to stop early)."""
        self.set_timesteps()
        like = torch.empty((), device=device)
        noise_scale = self.process.noise_scale  # s, read once per chain
        z = self.process.prior(shape, generator, like)  # z_T, (B, C, H, W)
        noisy = [self.needs_noise(self.previous(i)) for i in range(len(self.timesteps))]
        pending: list[Tensor] = []  # noise drawn ahead for the next steps, already on the device
        for i, t in enumerate(self.timesteps):
            t_prev = self.previous(i)
            t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
            out = model(z, t_batch).to(z.dtype)  # float32 chain even when the network runs under autocast
            noise = None
            if noisy[i]:
                pending = pending or noise_chunk(shape, generator, like, sum(noisy[i:]))
                noise = noise_scale * pending.pop(0)  # (B, C, H, W)
            z = self.step(out, t, t_prev, z, noise).prev_sample
            if callback is not None:
                callback(i + 1, len(self.timesteps))
        return z


class Ancestral(Sampler):
    """Ho et al. 2020, Algorithm 2, over all T steps:

    z_{t−1} = (z_t − β_t/√(1−ᾱ_t) · ĝ) / √(1−β_t) + σ_t·e,  no noise on the last step (t = 1).
    ``variance="beta"``: σ_t² = β_t (the study); ``"beta_tilde"``: σ_t² = β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t.
    ``clip_x0``: the mean is the posterior mean of q(z_{t−1} | z_t, x0) at the clipped x̂0 (eq. 7),
    μ̃ = √ᾱ_{t−1}·β_t/(1−ᾱ_t)·x̂0 + √α_t·(1−ᾱ_{t−1})/(1−ᾱ_t)·z_t, which equals line 4 for an unclipped x̂0.
    """

    name = "ancestral"

    def __init__(self, process: DiffusionProcess, variance: str = "beta", clip_x0: bool = False) -> None:
        super().__init__(process)
        if variance not in ("beta", "beta_tilde"):
            raise DDPMError(f"sampler.variance must be one of ['beta', 'beta_tilde'], got {variance!r}")
        self.variance = variance
        self.clip_x0 = bool(clip_x0)

    def set_timesteps(self) -> None:
        self.timesteps = list(range(self.schedule.T, 0, -1))

    def step(self, model_output: Tensor, t: int, t_prev: int, z: Tensor, noise: Tensor | None) -> StepOutput:
        s = self.schedule  # coefficients precomputed in float64 (NoiseSchedule)
        x0_hat = self.x0_hat(z, t, model_output)  # reported only, unless clip_x0: the mean below is Alg. 2's
        if self.clip_x0:  # μ̃_t(z_t, x̂0), eq. 7, coefficients in float64 host floats
            ab, ab_prev = s.alpha_bars_host[t], s.alpha_bars_host[t - 1]
            beta, one_minus_ab = 1 - ab / ab_prev, 1 - ab
            mean = (math.sqrt(ab_prev) * beta / one_minus_ab) * x0_hat + (
                math.sqrt(ab / ab_prev) * (1 - ab_prev) / one_minus_ab
            ) * z
        else:
            mean = (z - s.eps_coefs[t] * model_output) * s.sqrt_recip_alphas[t]  # Alg. 2, line 4
        if noise is None:
            return StepOutput(mean, x0_hat)
        sigma = s.sqrt_betas[t] if self.variance == "beta" else s.sqrt_posterior_variances[t]
        return StepOutput(mean + sigma * noise, x0_hat)


class DDIM(Sampler):
    """Song et al. 2021, eq. 12, on ``num_steps`` timesteps from T down to 1 (``spaced_timesteps``):

    x̂0 = (z_t − √(1−ᾱ_t)·ĝ)/√ᾱ_t
    σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev)
    z_prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev−σ²)·ĝ + σ·e
    η = 0 is deterministic; η = 1 with every step equals ancestral sampling with σ_t² = β̃_t.
    ``clip_x0``: x̂0 clipped to [−1, 1] in the first term, ĝ kept in the second (diffusers' ``clip_sample``).
    """

    name = "ddim"

    def __init__(
        self,
        process: DiffusionProcess,
        num_steps: int = 50,
        eta: float = 0.0,
        spacing: str = "linear",
        clip_x0: bool = False,
    ) -> None:
        super().__init__(process)
        check_steps(process.schedule, num_steps, eta, spacing)
        self.num_steps = num_steps
        self.eta = eta
        self.spacing = spacing
        self.clip_x0 = bool(clip_x0)

    def set_timesteps(self) -> None:
        self.timesteps = spaced_timesteps(self.schedule, self.num_steps, self.spacing)

    def needs_noise(self, t_prev: int) -> bool:
        return self.eta > 0 and t_prev > 0

    def step(self, model_output: Tensor, t: int, t_prev: int, z: Tensor, noise: Tensor | None) -> StepOutput:
        x0_hat = self.x0_hat(z, t, model_output)  # reported; z_prev folds it in below (unless clip_x0)
        s = self.schedule  # ᾱ as float64 host floats: every coefficient in float64, rounded once by torch
        ab, ab_prev = s.alpha_bars_host[t], s.alpha_bars_host[t_prev]
        sigma = self.eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        if self.clip_x0:  # eq. 12 as written: √ᾱ_prev·x̂0 + √(1−ᾱ_prev−σ²)·ĝ
            z_prev = math.sqrt(ab_prev) * x0_hat + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * model_output
            return StepOutput(z_prev if noise is None else z_prev + sigma * noise, x0_hat)
        # z_prev = √ᾱ_prev·(z − √(1−ᾱ)·ĝ)/√ᾱ + √(1−ᾱ_prev−σ²)·ĝ, as c_z·z + c_g·ĝ (eq. 12)
        c_z = math.sqrt(ab_prev / ab)
        c_g = math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) - c_z * math.sqrt(1 - ab)
        z_prev = c_z * z + c_g * model_output
        return StepOutput(z_prev if noise is None else z_prev + sigma * noise, x0_hat)
