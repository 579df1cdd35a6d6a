"""Per-epoch evaluation cost at N = 1000 as a fraction of a training epoch.

An epoch is estimated as the Lightning path's measured step time × 468 steps. Each metric is timed on
what the metric callback does per evaluation, with the real features cached (computed once per run):
- classifier FID (``val/fid_mnist``): features and predicted digits of N generated images + the
  64-d Fréchet distance, measured at N directly (cheap);
- Inception FID/KID (``val/fid``, ``val/kid``): pool3 features per image measured on a few images and
  scaled to N, plus the 2048-d Fréchet distance and KID on N random features, measured at N;
- PSNR/SSIM (``val/psnr``, ``val/ssim``): every sample against 100 references, measured on a part of N
  and scaled.
Sampling the N images is reported alongside from the sampling section's measured rates. Every row also
gives milliseconds per sample (and sampling rows per network call for one image), so a measurement at one N
and on one device can be projected to another N.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.common import EPOCH_STEPS, sync
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.evaluation.classifier import load_or_train_classifier
from ddpm_lightning.evaluation.metrics import (
    ClassifierFeatures,
    InceptionFeatures,
    class_coverage,
    frechet_distance,
    kernel_distance,
    psnr_ssim_against,
)
from ddpm_lightning.lit.data import load_mnist


def _timed(fn, device: torch.device) -> tuple[Any, float]:  # type: ignore[no-untyped-def]
    sync(device)
    tick = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - tick


def evaluation(
    device: torch.device,
    step_s: float,
    data_root: str,
    n: int = 1000,
    inception_images: int = 16,
    psnr_images: int = 100,
    kid_subsets: int = 10,
    sampling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Section 4. ``step_s``: the Lightning path's seconds per training step (section 1)."""
    epoch_s = step_s * EPOCH_STEPS
    images, _ = load_mnist(data_root, "test")  # stand-ins for N generated images: the cost does not depend on content
    fake, refs = images[:n], images[n : n + 100]
    costs: dict[str, dict[str, Any]] = {}

    model, meta = load_or_train_classifier(None)
    clf = ClassifierFeatures(model, meta["sha256"]).to(device)
    real_feats = clf(images[-n:])  # cached once per run in the callback: not timed
    clf(fake[: clf.batch_size])  # warm-up
    feats, t_feat = _timed(lambda: clf(fake), device)
    _, t_fid = _timed(lambda: frechet_distance(clf, real_feats, feats), device)
    _, t_pred = _timed(lambda: class_coverage(clf.predict(fake)), device)
    costs["classifier_fid"] = {
        "seconds": t_feat + t_fid + t_pred,
        "features_s": t_feat,
        "fid_s": t_fid,
        "predict_s": t_pred,
        "per_image_ms": 1e3 * t_feat / n,
        "how": f"measured at N={n}",
    }

    try:
        if inception_images < 1:
            raise DDPMError("skipped (inception_images = 0, e.g. --smoke)")
        inc = InceptionFeatures(None).to(device)  # $DDPM_FID_WEIGHTS or torch-fidelity's download
        k = min(inception_images, n)
        inc(fake[:k])  # warm-up at the timed batch size (oneDNN/cuDNN set up per shape)
        _, t_inc = _timed(lambda: inc(fake[:k]), device)
        per_image = t_inc / k
        rf, ff = torch.randn(n, 2048, dtype=torch.float64), torch.randn(n, 2048, dtype=torch.float64)
        _, t_fid = _timed(lambda: frechet_distance(inc, rf, ff), device)
        _, t_kid = _timed(lambda: kernel_distance(inc, rf, ff, subsets=kid_subsets, subset_size=n), device)
        t_kid_100 = t_kid * 100 / kid_subsets
        costs["inception_fid"] = {
            "seconds": per_image * n + t_fid,
            "per_image_ms": 1e3 * per_image,
            "fid_s": t_fid,
            "how": f"features timed on {k} images, scaled to N={n}; 2048-d FID at N",
        }
        costs["inception_fid_kid"] = {
            "seconds": per_image * n + t_fid + t_kid_100,
            "kid_100_subsets_s": t_kid_100,
            "how": f"as inception_fid, plus KID (100 subsets of {n}) from {kid_subsets} subsets × {100 // kid_subsets}",
        }
    except DDPMError as e:  # no weights and no network: say so, do not fail the benchmark
        costs["inception_fid"] = {"seconds": None, "unavailable": str(e)}

    m = min(psnr_images, n)
    psnr_ssim_against(fake[: min(m, 4)], refs, device=device)  # warm-up (kernels, the Gaussian window)
    _, t_ps = _timed(lambda: psnr_ssim_against(fake[:m], refs, device=device), device)
    costs["psnr_ssim"] = {
        "seconds": t_ps * n / m,
        "how": f"{m} samples × 100 references timed on {device.type} (batched), scaled to N={n}",
    }

    if sampling:
        for name, row in sampling["samplers"].items():
            costs[f"sampling_{name}"] = {
                "seconds": n / row["images_per_s"],
                "per_call_ms": 1e3 / (row["images_per_s"] * row["steps"]),
                "how": f"N={n} at the sampling section's {row['images_per_s']:.3g} images/s "
                f"({row['steps']} network calls per image)",
            }
    for row in costs.values():
        row["fraction_of_epoch"] = None if row.get("seconds") is None else row["seconds"] / epoch_s
        row["per_sample_ms"] = None if row.get("seconds") is None else 1e3 * row["seconds"] / n
    return {"n": n, "epoch_s_estimate": epoch_s, "step_s": step_s, "epoch_steps": EPOCH_STEPS, "costs": costs}
