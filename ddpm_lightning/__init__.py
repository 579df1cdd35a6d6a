"""ddpm_lightning: denoising diffusion models on MNIST with PyTorch Lightning and Hydra.

Layers (imports point down only):
- ``ddpm_lightning.core``: pure torch (schedules, degradations, networks, samplers).
- ``ddpm_lightning.lit``: Lightning module, data module, callbacks, metrics.
- entry points: ``train``, ``sample``, ``evaluate``, ``classifier``, ``report`` (Hydra).
"""

__version__ = "0.1.0"
