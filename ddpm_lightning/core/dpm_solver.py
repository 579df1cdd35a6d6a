"""DPM-Solver++(2M): a second-order multistep solver of the diffusion SDE/ODE, one network call a step.

Lu et al. 2022 ("DPM-Solver++", Algorithm 2 and its SDE form, §5/App. B). With α_t = √ᾱ_t,
σ_t = √(1−ᾱ_t), λ_t = log(α_t/σ_t) and h = λ_prev − λ_t > 0, a step from t to t_prev is

    D      = x̂0 = (z_t − σ_t·ĝ)/α_t  (``process.x0_from_output``)       (data prediction)
    D₂     = D + (1/(2r))·(D − D_last),  r = h_last/h                    (2nd order; D on the first step)
    z_prev = (σ_prev/σ_t)·e^{−ηh}·z_t + α_prev·(1 − e^{−(1+η)h})·D₂ + σ_prev·√(1 − e^{−2ηh})·e

η = 0 is the ODE solver (DPM-Solver++(2M)), η = 1 the SDE one (SDE-DPM-Solver++(2M)); the
correction term multiplies (D − D_last) by the same (1 − e^{−(1+η)h}) as D (the "midpoint" form).
With ``order=1`` the update is exactly DDIM (Song et al. 2021, eq. 12) with σ² = (1−e^{−2ηh})·σ_prev²,
i.e. DDIM's η for η ∈ {0, 1} (tested). The last step returns D (z_0 = x̂0), like DDIM.
Noise scale s (DES): as in samplers.py, ĝ predicts s·ε and the injected noise e carries s.
"""

from __future__ import annotations

import math

from torch import Tensor

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import Sampler, StepOutput, check_steps, spaced_timesteps


class DPMSolver(Sampler):
    name = "dpm_solver"

    def __init__(
        self,
        process: DiffusionProcess,
        num_steps: int = 50,
        eta: float = 1.0,
        order: int = 2,
        spacing: str = "logsnr",
        clip_x0: bool = False,
    ) -> None:
        super().__init__(process)
        check_steps(process.schedule, num_steps, eta, spacing)
        if order not in (1, 2):
            raise DDPMError(f"sampler.order must be one of [1, 2], got {order!r}")
        self.num_steps, self.eta, self.order, self.spacing = num_steps, eta, order, spacing
        self.clip_x0 = bool(clip_x0)  # D clipped to [−1, 1] (the data prediction's thresholding, Lu et al. 2022 §4)
        self._last: tuple[Tensor, float] | None = None  # (D, h) of the previous step
        self._alpha_bars: list[float] = []

    def set_timesteps(self) -> None:
        self.timesteps = spaced_timesteps(self.schedule, self.num_steps, self.spacing)
        self._alpha_bars = self.schedule.alpha_bars_host  # float64 host floats: no device sync per step
        self._last = None

    def needs_noise(self, t_prev: int) -> bool:
        return self.eta > 0 and t_prev > 0

    def step(self, model_output: Tensor, t: int, t_prev: int, z: Tensor, noise: Tensor | None) -> StepOutput:
        ab, ab_prev = self._alpha_bars[t], self._alpha_bars[t_prev]
        alpha, sigma = math.sqrt(ab), math.sqrt(1 - ab)
        d = self.x0_hat(z, t, model_output)  # x̂0 = (z_t − σ_t·ĝ)/α_t, (B, C, H, W); clip_x0: in [−1, 1]
        if t_prev == 0:
            return StepOutput(d, d)
        alpha_prev, sigma_prev = math.sqrt(ab_prev), math.sqrt(1 - ab_prev)
        h = math.log(alpha_prev / sigma_prev) - math.log(alpha / sigma)  # λ_prev − λ_t
        d2 = d
        if self.order == 2 and self._last is not None:
            d_last, h_last = self._last
            d2 = d + (h / h_last) / 2 * (d - d_last)  # 1/(2r), r = h_last/h
        self._last = (d, h)
        z_prev = sigma_prev / sigma * math.exp(-self.eta * h) * z - alpha_prev * math.expm1(-(1 + self.eta) * h) * d2
        if noise is None:
            return StepOutput(z_prev, d)
        return StepOutput(z_prev + sigma_prev * math.sqrt(-math.expm1(-2 * self.eta * h)) * noise, d)
