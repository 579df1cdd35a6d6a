"""Cold Diffusion (Bansal et al. 2022): a deterministic degradation, x0-prediction, Algorithm 2.

- ``Blur``: x_t = D(x0, t) = G_{σ_t} * x0, a Gaussian blur of standard deviation σ_t pixels with
  mirror (half-sample symmetric) boundaries, applied exactly in the DCT-II domain: the DCT basis
  diagonalises that convolution, and frequency ω is multiplied by exp(−σ²ω²/2) (the heat equation,
  as in Rissanen et al. 2023). σ_0 = 0 (identity), σ_t log-spaced from ``sigma_min`` to
  ``sigma_max`` for t = 1..T. Blurs compose like Bansal et al.'s repeated kernel:
  G_a * G_b = G_{√(a²+b²)}. The mean of every channel is preserved, and at σ_max = 40 px on 28×28
  images every non-constant frequency keeps < 5·10⁻⁵ of its amplitude: D(x0, T) is the image's
  per-channel mean, replicated.
- The network R(x_t, t) predicts x0, trained on ‖R(D(x0, t), t) − x0‖² (the module's MSE loss;
  Bansal et al. use ℓ1).
- ``ColdSampler``: Bansal et al. Algorithm 2, x_{t−1} = x_t − D(x̂0, t) + D(x̂0, t−1), x̂0 = R(x_t, t).

Unconditional generation needs x_T without an image. Following Bansal et al.'s generation with
blur (blur until the image is its channel means, draw those means from a density fitted to the
training data, add a little Gaussian noise to break the symmetry), ``Blur`` records the mean and
standard deviation of the per-image channel means over training (buffers, stored in checkpoints)
and its ``prior`` is x_T = m + prior_noise·ε with m ~ N(mean, std²) per image and channel (a
one-component fit) and ε ~ N(0, I) per pixel. Without that noise, samples with the same m would be
identical. The noise is never seen in training (as in the paper), and Algorithm 2 telescopes,
x_0 = x_T + Σ_t [D(x̂0, t−1) − D(x̂0, t)], so it also reaches x_0 as faint grain: keep it small.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from ddpm_lightning.core.degradations import Degradation, TrainingExample, randn
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import Model, Sampler, StepOutput
from ddpm_lightning.core.schedules import NoiseSchedule


def dct_matrix(n: int, device: torch.device | str | None = None) -> Tensor:
    """Orthonormal DCT-II matrix (n, n): C[k, i] = √(2/n)·c_k·cos(π k (2i + 1) / 2n), c_0 = 1/√2.

    Built on ``device`` directly (no host-to-device copy).
    """
    k = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(n, device=device, dtype=torch.float32)[None, :]
    c = math.sqrt(2.0 / n) * torch.cos(math.pi * k * (2 * i + 1) / (2 * n))
    c[0] = c[0] / math.sqrt(2.0)
    return c


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def gaussian_blur(x: Tensor, sigma: Tensor, tables: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """Blur x (B, C, H, W) with a Gaussian of std ``sigma`` (B,) pixels, mirror boundaries, via the DCT.

    X = C_H x C_Wᵀ;  X[u, v] ·= exp(−σ²/2 · (ω_u² + ω_v²)), ω_u = π u / H;  x' = C_Hᵀ X C_W.
    For σ ≳ 1 px this equals convolution with the sampled Gaussian kernel (mirror-padded); for smaller σ
    it is the band-limited Gaussian (a sampled kernel that narrow aliases).
    ``tables`` = (C_H, C_W, ω_u² + ω_v²) from ``dct_tables`` (built here if not given).
    Computed in float32 even under autocast (a bf16 DCT would lose the image's fine detail).
    """
    ch, cw, omega2 = tables if tables is not None else dct_tables(*x.shape[-2:], device=x.device)
    with _no_autocast(x.device):
        gain = torch.exp(-0.5 * sigma.float().view(-1, 1, 1, 1) ** 2 * omega2)  # (B, 1, H, W)
        coeffs = ch @ x.float() @ cw.T  # (B, C, H, W) DCT coefficients
        out = ch.T @ (coeffs * gain) @ cw
    return out.to(x.dtype)


def dct_tables(h: int, w: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(C_H (H, H), C_W (W, W), ω_u² + ω_v² (H, W)) for ``gaussian_blur``."""
    wh = math.pi * torch.arange(h, device=device, dtype=torch.float32) / h  # (H,)
    ww = math.pi * torch.arange(w, device=device, dtype=torch.float32) / w  # (W,)
    return dct_matrix(h, device), dct_matrix(w, device), wh[:, None] ** 2 + ww[None, :] ** 2


class Deterministic(Degradation):
    """A cold degradation: x_t = D(x0, t) with no noise; the network predicts x0.

    Subclasses implement ``degrade`` (with D(x, 0) = x) and ``prior``.
    """

    prediction = "x0"

    def degrade(self, x0: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
        """D(x0, t) for images (B, C, H, W) and steps t (B,)."""
        raise NotImplementedError

    def training_example(
        self, x0: Tensor, t: Tensor, schedule: NoiseSchedule, generator: torch.Generator | None = None
    ) -> TrainingExample:
        return TrainingExample(self.degrade(x0, t, schedule), x0)  # (x_t, target x0)


class Blur(Deterministic):
    """Cold Diffusion Gaussian blur: D(x0, t) = G_{σ_t} * x0 (see the module docstring).

    ``schedule`` only contributes its T; the β_t are unused.
    """

    prior_mean: Tensor
    prior_sq: Tensor
    prior_count: Tensor

    def __init__(self, sigma_min: float = 0.5, sigma_max: float = 40.0, prior_noise: float = 0.05) -> None:
        super().__init__()
        if not sigma_min > 0:
            raise DDPMError(f"degradation.sigma_min must be > 0, got {sigma_min!r}")
        if not sigma_max >= sigma_min:
            raise DDPMError(f"degradation.sigma_max must be >= sigma_min ({sigma_min}), got {sigma_max!r}")
        if not prior_noise >= 0:
            raise DDPMError(f"degradation.prior_noise must be >= 0, got {prior_noise!r}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.prior_noise = float(prior_noise)
        # Running moments of the per-image channel means m over training: E[m], E[m²], count.
        self.register_buffer("prior_mean", torch.zeros(()))
        self.register_buffer("prior_sq", torch.zeros(()))
        self.register_buffer("prior_count", torch.zeros((), dtype=torch.long))
        self._cache: dict[tuple[int, int, int, str], tuple[Tensor, tuple[Tensor, Tensor, Tensor]]] = {}

    def sigmas(self, T: int, device: torch.device | str | None = None) -> Tensor:
        """σ_t for t = 0..T (T + 1,): σ_0 = 0, then log-spaced from sigma_min (t = 1) to sigma_max (t = T)."""
        frac = torch.arange(T, device=device, dtype=torch.float32) / max(T - 1, 1)  # 0..1 for t = 1..T
        sig = self.sigma_min * (self.sigma_max / self.sigma_min) ** frac
        return torch.cat([sig.new_zeros(1), sig])

    def _tables(self, T: int, h: int, w: int, device: torch.device) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """σ_t and the DCT tables, built once per (T, H, W, device) on that device."""
        key = (T, h, w, str(device))
        if key not in self._cache:
            self._cache = {key: (self.sigmas(T, device), dct_tables(h, w, device))}  # keep only the latest
        return self._cache[key]

    def degrade(self, x0: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
        sigmas, tables = self._tables(schedule.T, x0.shape[-2], x0.shape[-1], x0.device)
        blurred = gaussian_blur(x0, sigmas[t], tables)  # (B, C, H, W)
        return torch.where((t == 0).view(-1, 1, 1, 1), x0, blurred)  # D(x, 0) = x exactly

    def training_example(
        self, x0: Tensor, t: Tensor, schedule: NoiseSchedule, generator: torch.Generator | None = None
    ) -> TrainingExample:
        if self.training:  # moments of the channel means, on the device, no host sync
            m = x0.detach().float().mean(dim=(2, 3)).flatten()  # (B·C,)
            n_new = self.prior_count + m.numel()
            w = m.numel() / n_new
            self.prior_mean += w * (m.mean() - self.prior_mean)
            self.prior_sq += w * ((m**2).mean() - self.prior_sq)
            self.prior_count.copy_(n_new)
        return super().training_example(x0, t, schedule, generator)

    @property
    def prior_std(self) -> Tensor:
        return (self.prior_sq - self.prior_mean**2).clamp_min(0).sqrt()

    def prior(self, shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
        """x_T = m + prior_noise·ε: m ~ N(mean, std²) per image and channel (B, C, 1, 1), ε per pixel.

        A cold degradation has no noise scale: ``noise_scale`` (1) is not used.
        """
        b, c = shape[:2]
        mean, std = self.prior_mean.to(like.device), self.prior_std.to(like.device)
        m = mean + std * randn((b, c, 1, 1), generator, like)  # (B, C, 1, 1)
        return m + self.prior_noise * randn(shape, generator, like)  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, prior_noise={self.prior_noise}"


class ColdSampler(Sampler):
    """Bansal et al. 2022, Algorithm 2 (improved sampling for cold diffusion):

    x̂0 = R(x_t, t);  x_{t'} = x_t − D(x̂0, t) + D(x̂0, t'),  t' the next (smaller) timestep.
    With ``num_steps=None`` all T steps are taken (t' = t − 1); otherwise ``num_steps`` evenly
    spaced timesteps from T down to 1, then t' = 0. If R is exact and x_t = D(x0, t), every step
    lands exactly on D(x0, t'), whatever the (linear) D. No noise is injected.
    """

    name = "cold"
    prediction = "x0"

    def __init__(self, process: DiffusionProcess, num_steps: int | None = None) -> None:
        super().__init__(process)  # x0-prediction checked there
        if not isinstance(process.degradation, Deterministic):
            name = type(process.degradation).__name__
            raise DDPMError(f"sampler 'cold' needs a deterministic (cold) degradation such as blur, got {name}")
        T = process.T
        if num_steps is not None and (
            isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= T
        ):
            raise DDPMError(f"sampler.num_steps must be null or an integer in [1, T={T}], got {num_steps!r}")
        self.num_steps = num_steps
        self.degradation: Deterministic = process.degradation

    def set_timesteps(self) -> None:
        if self.num_steps is None:
            self.timesteps = list(range(self.schedule.T, 0, -1))
            return
        steps = torch.linspace(self.schedule.T, 1, self.num_steps, dtype=torch.float64, device="cpu").round().long()
        self.timesteps = list(dict.fromkeys(steps.tolist()))  # descending, unique, T first and 1 last

    def needs_noise(self, t_prev: int) -> bool:
        return False

    def step(self, model_output: Tensor, t: int, t_prev: int, z: Tensor, noise: Tensor | None) -> StepOutput:
        x0_hat = self.process.x0_from_output(z, t, model_output)  # x̂0 = R(x_t, t), Alg. 2, line 3
        b = z.shape[0]
        t_now = torch.full((b,), t, device=z.device, dtype=torch.long)
        t_next = torch.full((b,), t_prev, device=z.device, dtype=torch.long)
        d = self.degradation.degrade
        return StepOutput(z - d(x0_hat, t_now, self.schedule) + d(x0_hat, t_next, self.schedule), x0_hat)  # line 4

    @torch.no_grad()
    def restore(self, model: Model, x_t: Tensor, t: int | None = None) -> Tensor:
        """Algorithm 2 from a given degraded batch x_t (B, C, H, W) at step t (default T) down to x_0."""
        self.set_timesteps()
        start = self.schedule.T if t is None else t
        if not 1 <= start <= self.schedule.T:
            raise DDPMError(f"restore: t must be an integer in [1, T={self.schedule.T}], got {t!r}")
        self.timesteps = [start] + [s for s in self.timesteps if s < start]
        z = x_t
        for i, s in enumerate(self.timesteps):
            out = model(z, torch.full((z.shape[0],), s, device=z.device, dtype=torch.long))  # x̂0
            z = self.step(out, s, self.previous(i), z, None).prev_sample
        return z
