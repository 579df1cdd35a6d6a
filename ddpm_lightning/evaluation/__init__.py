"""Sample-quality evaluation, free of Lightning and Hydra (imports core, torch and torchmetrics only).

- ``quality.SampleQuality``: every sample-quality metric of a set of generated images, built from the
  ``conf/metrics/`` settings; used by the training callback ``lit.metric_callbacks.GenerativeMetrics``
  and by ``evaluate`` alike.
- ``denoising.DenoisingQuality``: PSNR/SSIM of x̂0 at fixed noise levels, for the callback
  ``lit.metric_callbacks.DenoisingMetrics`` and ``evaluate``'s ``denoise``.
- ``metrics``: feature extractors (Inception, the MNIST classifier), the real-feature cache, FID / KID /
  PSNR / SSIM / class coverage through torchmetrics.
- ``confidence``: real-vs-real floors and bootstrap intervals of FID.
- ``classifier``: the MNIST classifier's training, file format and loading (``load_or_train_classifier``).
- ``data``: MNIST's IDX files as tensors in [−1, 1].
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ddpm_lightning.evaluation.denoising import DenoisingQuality
    from ddpm_lightning.evaluation.quality import SampleQuality

__all__ = ["DenoisingQuality", "SampleQuality"]

# Imported on first use (PEP 562): the metrics load torchmetrics (and with it torchvision's models, seconds of
# start-up), which the classifier's training and the MNIST reader do not need.
_LAZY = {"DenoisingQuality": "denoising", "SampleQuality": "quality"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
