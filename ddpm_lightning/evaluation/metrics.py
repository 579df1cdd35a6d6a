"""Feature extractors, cached real features and the torchmetrics calls behind the sample-quality metrics.

Images are (N, 1, 28, 28) floats in [−1, 1] everywhere (the data module's range).

- ``InceptionFeatures``: torchmetrics' ``NoTrainInceptionV3`` ("inception-v3-compat", the network FID is
  defined on), 2048-d pool3 features. It is fed what it asserts: uint8 in [0, 255], the grayscale channel
  repeated to 3; it resizes to 299×299 itself, by default like TF1 / torch-fidelity (bilinear without
  antialiasing: FID equals torch-fidelity's to ~1e-7), or with PyTorch's antialiased bilinear
  (``antialias=True``, torchmetrics' own default, ~1.7 % off on MNIST). Weights: ``resolve_inception_weights``.
- ``ClassifierFeatures``: the project's MNIST classifier, its 64-d penultimate layer.

Each extractor is a torchmetrics custom feature extractor (``FrechetInceptionDistance(feature=extractor)``,
``num_features`` set) that also passes an already extracted (N, d) tensor through unchanged. So real
features come from the disk cache (``cached_features``, one file per split, N, extractor and data
content) and each set of generated images goes through an extractor once, for FID and KID together.
FID, KID, PSNR and SSIM themselves are torchmetrics'. The helpers below compute on the whole set they are
given, in this process: ``sync_on_compute=False`` (under DDP the callback gathers the samples first).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image import (
    FrechetInceptionDistance,
    KernelInceptionDistance,
    PeakSignalNoiseRatio,
    StructuralSimilarityIndexMeasure,
)

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.networks.classifier import MNISTClassifier
from ddpm_lightning.utils import atomic_open, first_line

log = logging.getLogger(__name__)

FID_WEIGHTS_ENV = "DDPM_FID_WEIGHTS"
INCEPTION_FILE = "pt_inception-2015-12-05.pth"


def to_unit(images: Tensor) -> Tensor:
    """[−1, 1] -> [0, 1], the pixel range of every PSNR/SSIM here (data_range = 1)."""
    return ((images.float() + 1) / 2).clamp(0, 1)


def to_uint8_rgb(images: Tensor) -> Tensor:
    """(B, 1, H, W) in [−1, 1] -> (B, 3, H, W) uint8 in [0, 255] (rounded; data pixels map back exactly)."""
    return (to_unit(images) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)


class FeatureExtractor(nn.Module):
    """Images (N, 1, 28, 28) in [−1, 1] -> features (N, num_features), in batches, without gradients.

    A 2-D input (N, num_features) is taken as already extracted and returned as is."""

    num_features: int
    name: str  # the feature space, in cache file names and logged settings

    def __init__(self, batch_size: int = 100) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.calls = 0  # image batches extracted so far (tests count them)

    def extract(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            if x.shape[1] != self.num_features:
                raise ValueError(f"{self.name}: got features of width {x.shape[1]}, expected {self.num_features}")
            return x
        device = next(self.parameters()).device
        out = []
        for start in range(0, x.shape[0], self.batch_size):
            self.calls += 1
            out.append(self.extract(x[start : start + self.batch_size].to(device)).float().cpu())  # (b, d)
        return torch.cat(out) if out else torch.zeros(0, self.num_features, device="cpu")


def resolve_inception_weights(path: str | os.PathLike | None, key: str = "inception_weights") -> str | None:
    """The Inception weights file: ``path`` (config ``key``) if given, else ``$DDPM_FID_WEIGHTS``, else ``None``
    (torch-fidelity's own download into the torch hub cache). A named file must exist."""
    source = key
    if not path:
        path, source = os.environ.get(FID_WEIGHTS_ENV) or None, FID_WEIGHTS_ENV
    if path is None:
        return None
    if not Path(path).is_file():
        raise DDPMError(f"Inception weights not found: {path} (from {source}); point it at {INCEPTION_FILE}")
    return str(path)


INCEPTION_DIMS = (64, 192, 768, 2048)


class InceptionFeatures(FeatureExtractor):
    """FID's Inception-v3 features: the 2048-d pool3 features (standard FID), or the 64/192/768-d
    pooled activations of earlier blocks (torchmetrics' ``feature`` choices; cheap, for smoke tests).
    ``weights``: see ``resolve_inception_weights``. ``how_to_disable`` completes the one-line error
    raised when no weights can be had; ``weights_key`` is the config key that sets ``weights``. ``antialias``:
    False resizes to 299 like TF1 / torch-fidelity (the reference FID); True with PyTorch's antialiased
    bilinear. The name (cache key) encodes the resize."""

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        batch_size: int = 100,
        how_to_disable: str = "",
        dims: int = 2048,
        antialias: bool = False,
        weights_key: str = "inception_weights",
    ) -> None:
        super().__init__(batch_size)
        from torchmetrics.image.fid import NoTrainInceptionV3

        if dims not in INCEPTION_DIMS:
            raise DDPMError(f"inception_dims must be one of {list(INCEPTION_DIMS)}, got {dims!r}")
        self.num_features = dims
        path = resolve_inception_weights(weights, weights_key)
        if path is not None:
            try:  # a plain state dict; check it without running code from the file
                torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise DDPMError(f"cannot read Inception weights {path}: {first_line(e)}") from None
        try:
            self.net = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=[str(dims)],
                feature_extractor_weights_path=path,
                antialias=antialias,
            )
        except Exception as e:
            what = f"loading {path}" if path else "downloading them"
            first = first_line(e)
            raise DDPMError(
                f"FID/KID need the Inception weights ({INCEPTION_FILE}) and {what} failed "
                f"({type(e).__name__}: {first}); "
                f"set {FID_WEIGHTS_ENV}=/path/to/{INCEPTION_FILE} or {weights_key}=/path/to/{INCEPTION_FILE}"
                + (f", or turn FID/KID off ({how_to_disable})" if how_to_disable else "")
            ) from None
        self.weights = path or "torch-fidelity download (torch hub cache)"
        self.antialias = antialias
        self.resize = "bilinear-antialias" if antialias else "tf1-bilinear"  # what the 299×299 resize is
        layer = "pool3" if dims == 2048 else str(dims)
        self.name = f"inception-v3-compat-{layer}-{self.resize}"

    def extract(self, images: Tensor) -> Tensor:
        return self.net(to_uint8_rgb(images))  # (b, dims)


class ClassifierFeatures(FeatureExtractor):
    """The MNIST classifier's penultimate features; ``digest`` (of its weights file) names the space."""

    def __init__(self, model: MNISTClassifier, digest: str, batch_size: int = 500) -> None:
        super().__init__(batch_size)
        self.model = model.eval()
        self.num_features = model.feature_dim
        self.name = f"mnist-classifier-{digest[:12]}"

    def train(self, mode: bool = True) -> ClassifierFeatures:  # BatchNorm stays in eval mode
        return super().train(False)

    def extract(self, images: Tensor) -> Tensor:
        return self.model.features(images)  # (b, feature_dim)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Predicted digit per image (N,), on cpu."""
        device = next(self.parameters()).device
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            out.append(self.model(images[start : start + self.batch_size].to(device)).argmax(1).cpu())
        return torch.cat(out)


def content_digest(images: Tensor) -> str:
    """sha256 of the images as uint8, so a cache entry never outlives a change of data."""
    return hashlib.sha256(to_uint8_rgb(images.cpu())[:, :1].numpy().tobytes()).hexdigest()


def cached_features(extractor: FeatureExtractor, images: Tensor, cache_dir: str | os.PathLike, split: str) -> Tensor:
    """Features (N, d) of real ``images``, read from ``<cache_dir>/features/`` or computed once and written there.

    The file name holds the split, N, the extractor and a digest of the images."""
    n = images.shape[0]
    path = Path(cache_dir) / "features" / f"{split}_n{n}_{extractor.name}_{content_digest(images)[:12]}.pt"
    if path.is_file():
        try:
            feats = torch.load(path, map_location="cpu", weights_only=True)["features"]
            if tuple(feats.shape) == (n, extractor.num_features):
                log.info("real features: %s (cached)", path)
                return feats
        except Exception as e:  # unreadable: recompute and overwrite
            log.warning("ignoring unreadable feature cache %s (%s)", path, type(e).__name__)
    try:  # before the extraction (minutes with Inception on CPU): a read-only cache fails now, in one line
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise PermissionError(13, "read-only")
    except OSError as e:
        raise DDPMError(
            f"feature cache directory {path.parent} is not writable ({e.strerror or e}); "
            "set DDPM_CACHE_DIR (or paths.cache_dir) to a writable folder"
        ) from None
    log.info("real features: extracting %d %s images with %s -> %s", n, split, extractor.name, path)
    feats = extractor(images)  # (N, d)
    with atomic_open(path) as f:
        torch.save({"features": feats, "split": split, "n": n, "extractor": extractor.name}, f)
    return feats


def frechet_distance(extractor: FeatureExtractor, real: Tensor, fake: Tensor) -> float:
    """torchmetrics FID between two sets, each images or (N, d) features of ``extractor``."""
    fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False, sync_on_compute=False)
    fid.update(extractor(real).double(), real=True)
    fid.update(extractor(fake).double(), real=False)
    return float(fid.compute())


def kernel_distance(
    extractor: FeatureExtractor, real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """torchmetrics KID (mean, std over ``subsets`` random subsets of min(subset_size, N) samples).
    The subsets are drawn from a fixed seed, so equal inputs give equal values. Subsets as large as
    both sets are all the same set (MMD ignores order): then one is computed, and the std is 0."""
    real, fake = extractor(real), extractor(fake)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size == real.shape[0] == fake.shape[0]:
        subsets = 1
    with warnings.catch_warnings():  # "will save all extracted features in buffer": N x d floats, intended
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        kid = KernelInceptionDistance(
            feature=extractor, subsets=subsets, subset_size=size, reset_real_features=False, sync_on_compute=False
        )
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return float(mean), float(std)


def psnr_ssim_against(
    generated: Tensor, references: Tensor, chunk: int | None = None, device: torch.device | str = "cpu"
) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM of every generated image against every reference image (the study's
    measure), pixels in [0, 1]: PSNR = 20·log10(1/√MSE) per pair, SSIM with an 11×11 Gaussian window.
    Computed on ``device`` in batches of ``chunk`` generated images × all references (None: 20 on a CPU,
    250 on a GPU, i.e. 1000 samples × 100 references in 4 batched calls of 25,000 pairs)."""
    device = torch.device(device)
    chunk = chunk or (20 if device.type == "cpu" else 250)
    psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3), sync_on_compute=False).to(device)  # per pair
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0, sync_on_compute=False).to(device)
    g, r = to_unit(generated.to(device)), to_unit(references.to(device))  # (N, 1, H, W), (R, 1, H, W)
    for start in range(0, g.shape[0], chunk):
        part = g[start : start + chunk]  # (b, 1, H, W)
        preds = part.repeat_interleave(r.shape[0], dim=0)  # (b·R, 1, H, W): each generated image R times
        target = r.repeat(part.shape[0], 1, 1, 1)  # (b·R, 1, H, W): all references per generated image
        psnr.update(preds, target)
        # SSIM: the R pairs of one generated image as R channels of one image. SSIM's mean over
        # channels and pixels equals the mean over pairs (same pixel count each) and the per-channel
        # Gaussian filter runs ~2.5x faster on CPU than R single-channel images.
        ssim.update(
            preds.view(part.shape[0], r.shape[0], *r.shape[2:]), target.view(part.shape[0], r.shape[0], *r.shape[2:])
        )
    return float(psnr.compute()), float(ssim.compute())


def class_coverage(predictions: Tensor, num_classes: int = 10, min_share: float = 0.1) -> dict[str, Any]:
    """Mode coverage from predicted digits (N,): entropy (bits, log2(10) = 3.32 when uniform) of the
    class histogram, and the number of classes holding at least ``min_share`` of a uniform share."""
    counts = torch.bincount(predictions.long().cpu(), minlength=num_classes)[:num_classes].double()  # (10,)
    probs = counts / counts.sum().clamp_min(1)
    entropy_bits = float(torch.special.entr(probs).sum()) / math.log(2)  # −Σ p·ln p, in bits; exactly 0 for one class
    covered = int((counts >= min_share * counts.sum() / num_classes).sum()) if counts.sum() > 0 else 0
    return {"class_entropy": entropy_bits, "modes_covered": covered, "class_counts": counts.long().tolist()}
