"""How far a score can be trusted: the real-vs-real floor of a metric, and bootstrap intervals.

- ``real_floor``: the FID between two disjoint real sets of the same size N (the first N train and the
  first N test images), with the same extractor. FID is biased upwards at small N, so this is the
  lowest value a perfect generator could expect at that N; it is reported beside every score.
  Computed once per (extractor, N, data) and cached in ``<cache_dir>/floors/`` as JSON.
- ``bootstrap_fid``: the percentile interval of FID over ``resamples`` resamplings (with replacement)
  of the generated features, the real statistics fixed (torchmetrics' FID with
  ``reset_real_features=False``): the spread that comes from the finite generated set alone.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import Tensor
from torchmetrics.image import FrechetInceptionDistance

from ddpm_lightning.evaluation.metrics import FeatureExtractor, cached_features, content_digest, frechet_distance
from ddpm_lightning.utils import atomic_open

log = logging.getLogger(__name__)


def real_floor(
    extractor: FeatureExtractor,
    first: Tensor,
    second: Tensor,
    cache_dir: str | os.PathLike | None,
    names: tuple[str, str] = ("train", "test"),
    second_features: Tensor | None = None,
) -> float:
    """FID between two disjoint sets of real images ``first`` and ``second`` (N, 1, 28, 28), named ``names``;
    ``second_features``: ``second``'s features (N, d) when already at hand.

    With a ``cache_dir`` the value (and each set's features) is computed once and read back after."""
    path = None
    n = first.shape[0]
    if cache_dir is not None:
        digest = content_digest(first)[:8] + content_digest(second)[:8]
        path = Path(cache_dir) / "floors" / f"fid_{names[0]}-vs-{names[1]}_n{n}_{extractor.name}_{digest}.json"
        if path.is_file():
            try:
                return float(json.loads(path.read_text())["fid"])
            except Exception as e:  # unreadable: recompute and overwrite
                log.warning("ignoring unreadable floor cache %s (%s)", path, type(e).__name__)
        first = cached_features(extractor, first, cache_dir, names[0])  # (N, d)
        if second_features is None:
            second_features = cached_features(extractor, second, cache_dir, names[1])
    value = frechet_distance(extractor, first, second if second_features is None else second_features)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w") as f:
            f.write(json.dumps({"fid": value, "extractor": extractor.name, "sets": list(names), "n": n}))
    log.info("FID floor (%s, %s vs %s, N = %d): %.4f", extractor.name, *names, n, value)
    return value


def bootstrap_fid(
    extractor: FeatureExtractor, real: Tensor, fake: Tensor, resamples: int, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """(low, high): the central ``level`` percentile interval of FID(real, fake*) over ``resamples``
    bootstrap resamples fake* of the generated features (N, d), the real ones fixed."""
    real, fake = extractor(real).double(), extractor(fake).double()  # (N, d), (M, d)
    fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    fid.update(real, real=True)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(resamples):
        idx = torch.randint(0, fake.shape[0], (fake.shape[0],), generator=generator)  # (M,) with replacement
        fid.reset()  # keeps the real statistics
        fid.update(fake[idx], real=False)
        values.append(float(fid.compute()))
    q = torch.tensor(values, dtype=torch.float64).quantile(
        torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    )
    return float(q[0]), float(q[1])
