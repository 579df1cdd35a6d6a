"""Denoising quality: how well one network call recovers x0 from z_t, at fixed noise levels (Lightning-free).

Used by the training callback ``lit.metric_callbacks.DenoisingMetrics`` (on a fixed validation batch) and by
``evaluate`` (``denoise``: the first n images of the real split) alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.evaluation.metrics import to_unit


class DenoisingQuality:
    """PSNR/SSIM of x̂0 against x0 for the first ``n`` images at fixed ``timesteps``.

    z_t comes from the process with noise from ``seed`` (fixed per t), then x̂0 = ``process.x0_from_output``:
    (z_t − √(1−ᾱ_t)·ĝ)/√ᾱ_t for ε-prediction (Ho et al. 2020, eq. 4 solved for x0), or the network output itself
    for a degradation predicting 'x0'. x̂0 is clamped to [−1, 1]; pixels compared in [0, 1].
    ``timesteps`` null: round(0.1·T), round(0.5·T), round(0.9·T) (100, 500, 900 at T = 1000).
    ``config_key`` names the settings in error messages.
    """

    def __init__(
        self, n: int = 64, timesteps: list[int] | None = None, seed: int = 0, config_key: str = "denoise"
    ) -> None:
        if n < 1:
            raise DDPMError(f"{config_key}.n must be >= 1, got {n}")
        self.n, self.timesteps, self.seed, self.config_key = n, timesteps, seed, config_key

    def resolve_timesteps(self, T: int) -> list[int]:
        ts = list(self.timesteps) if self.timesteps else sorted({max(1, round(f * T)) for f in (0.1, 0.5, 0.9)})
        bad = [t for t in ts if not (isinstance(t, int) and 1 <= t <= T)]
        if bad:
            raise DDPMError(f"{self.config_key}.timesteps must be integers in [1, T={T}], got {bad}")
        return ts

    @torch.no_grad()
    def compute(self, network: nn.Module, process: DiffusionProcess, x0: Tensor) -> dict[str, float]:
        """{'denoise_psnr_t<t>', 'denoise_ssim_t<t>'} for x0 (B, C, H, W) in [−1, 1]; ``network(z_t, t)`` is the
        model's output for ``process`` (a DiffusionModule is both: ``compute(module, module.process, x0)``)."""
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

        was_training = network.training
        network.eval()  # DES keeps its running scale untouched in eval mode
        device = next(iter([*network.parameters(), *network.buffers()]), x0).device  # the network's device
        x0 = x0.to(device)
        out: dict[str, float] = {}
        for t in self.resolve_timesteps(process.T):
            generator = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + t)
            tt = torch.full((x0.shape[0],), t, dtype=torch.long, device=device)  # (B,)
            z_t, _ = process.training_example(x0, tt, generator)  # (B, C, H, W)
            x0_hat = process.x0_from_output(z_t, t, network(z_t, tt))  # (B, C, H, W)
            pred, target = to_unit(x0_hat.clamp(-1, 1)), to_unit(x0)
            out[f"denoise_psnr_t{t}"] = float(peak_signal_noise_ratio(pred, target, data_range=1.0, dim=(1, 2, 3)))
            out[f"denoise_ssim_t{t}"] = float(structural_similarity_index_measure(pred, target, data_range=1.0))
        network.train(was_training)
        return out

    def settings(self, T: int) -> dict[str, Any]:
        """What the numbers were computed on (TensorBoard text, evaluate's JSON)."""
        return {
            "images": f"first {self.n} validation images",
            "timesteps": self.resolve_timesteps(T),
            "noise_seed": self.seed,
            "x0_hat": "(z_t - sqrt(1-abar_t) g) / sqrt(abar_t) (eps) or g (x0), clamped to [-1, 1]",
            "pixel_range": "[0, 1]",
        }
