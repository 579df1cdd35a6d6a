"""``SampleQuality``: every sample-quality metric of a set of generated images, from its settings.

Built from the ``conf/metrics/`` settings (shared by the training callback ``GenerativeMetrics`` and by
``evaluate``): ``prepare`` builds the enabled extractors, the real features (cached on disk with a
``cache_dir``), the PSNR/SSIM references and the floors, once; ``compute`` scores generated images
(N, 1, 28, 28) in [−1, 1]; ``settings`` says what each number was computed on.

- ``psnr``, ``ssim``: each sample against the first ``psnr_references`` real images, mean over pairs,
  pixels in [0, 1].
- ``fid``, ``kid``/``kid_std``: Inception (``inception_dims`` features, weights from ``inception_weights`` /
  $DDPM_FID_WEIGHTS / download; ``inception_antialias`` false: the TF1 / torch-fidelity resize of the
  reference FID, true: PyTorch's antialiased one), against the first ``n`` real ``split`` images.
- ``fid_mnist``, ``class_entropy``, ``modes_covered``: the MNIST classifier (``classifier_path`` null: the
  packaged one); ``last_predictions`` holds the predicted digits of the last ``compute``.
- ``<fid>_floor``: the same FID between the first n images of the other split and the real set;
  ``<fid>_ci_low``/``_ci_high``: bootstrap intervals (``bootstrap`` resamples).

The FIDs are persistent torchmetrics objects holding the real statistics (``reset_real_features=False``):
each ``compute`` resets only the generated side. Nothing here knows about Lightning or Hydra.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor
from torchmetrics.image import FrechetInceptionDistance

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.evaluation.classifier import load_or_train_classifier
from ddpm_lightning.evaluation.confidence import bootstrap_fid, real_floor
from ddpm_lightning.evaluation.data import load_mnist
from ddpm_lightning.evaluation.metrics import (
    ClassifierFeatures,
    FeatureExtractor,
    InceptionFeatures,
    cached_features,
    class_coverage,
    kernel_distance,
    psnr_ssim_against,
)

log = logging.getLogger(__name__)


class SampleQuality:
    """Sample-quality metrics of ``n`` generated images against the first ``n`` real ``split`` images.

    ``config_key`` names these settings in error messages (``callbacks.generative_metrics``, ``metrics``)."""

    def __init__(
        self,
        n: int = 1000,
        seed: int = 1234,
        psnr_ssim: bool = True,
        fid: bool = True,
        kid: bool = True,
        fid_mnist: bool = True,
        psnr_references: int = 100,
        kid_subsets: int = 50,
        kid_subset_size: int = 500,
        inception_dims: int = 2048,
        inception_antialias: bool = False,
        min_mode_share: float = 0.1,
        inception_weights: str | None = None,
        classifier_path: str | None = None,
        train_classifier_if_missing: bool = True,
        cache_dir: str | None = None,
        data_root: str | None = None,
        split: str = "test",
        floors: bool = True,
        bootstrap: int = 0,
        bootstrap_inception: bool = False,
        confidence: float = 0.95,
        config_key: str = "metrics",
    ) -> None:
        if n < 2 or psnr_references < 1:
            raise DDPMError(f"{config_key}: n must be >= 2 and psnr_references >= 1; got {n}, {psnr_references}")
        if split not in ("train", "test"):
            raise DDPMError(f"{config_key}.split must be 'train' or 'test', got {split!r}")
        if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0 or not 0 < confidence < 1:
            raise DDPMError(
                f"{config_key}: bootstrap must be an integer >= 0 and confidence in (0, 1), "
                f"got {bootstrap!r}, {confidence!r}"
            )
        self.n, self.seed = n, seed
        self.switches = {"psnr_ssim": psnr_ssim, "fid": fid, "kid": kid, "fid_mnist": fid_mnist}
        self.psnr_references, self.kid_subsets, self.kid_subset_size = psnr_references, kid_subsets, kid_subset_size
        self.inception_dims, self.inception_antialias = inception_dims, inception_antialias
        self.min_mode_share = min_mode_share
        self.inception_weights, self.classifier_path = inception_weights, classifier_path
        self.train_classifier_if_missing = train_classifier_if_missing
        self.cache_dir, self.data_root, self.split, self.config_key = cache_dir, data_root, split, config_key
        self.floors, self.bootstrap, self.bootstrap_inception, self.confidence = (
            floors,
            bootstrap,
            bootstrap_inception,
            confidence,
        )
        self.floor_values: dict[str, float] = {}  # extractor -> real-vs-real FID at this N
        self.floor_sets: tuple[str, str] = ("train" if split == "test" else "test", split)
        self.inception: InceptionFeatures | None = None
        self.classifier: ClassifierFeatures | None = None
        self.classifier_meta: dict[str, Any] = {}
        self.real: dict[str, Tensor] = {}  # extractor -> real features (N, d)
        self._fid: dict[str, FrechetInceptionDistance] = {}  # extractor -> FID holding the real statistics
        self.references: Tensor | None = None  # (R, 1, 28, 28)
        self.n_real = 0
        self.last_predictions: Tensor | None = None
        self.timings: dict[str, float] = {}
        self.device = torch.device("cpu")  # set by prepare

    @property
    def enabled(self) -> bool:
        return any(self.switches.values())

    # ---- set-up: extractors and real features, once ------------------------------------------
    def real_images(self) -> Tensor:
        """The first max(n, psnr_references) images of ``split`` from ``data_root``."""
        if self.data_root is None:
            raise DDPMError(f"{self.config_key}.data_root is needed: no MNIST root to take the real images from")
        images, _ = load_mnist(self.data_root, self.split, n=max(self.n, self.psnr_references))
        if images.shape[0] < self.n:
            log.warning("%s: only %d real %s images for n=%d", self.config_key, images.shape[0], self.split, self.n)
        return images

    def prepare(self, real: Tensor | None = None, device: torch.device | str = "cpu") -> None:
        """Build the enabled extractors and the features of the first n ``real`` images (None: read from
        ``data_root``; from the cache when there); the first ``psnr_references`` are the PSNR/SSIM references."""
        real = self.real_images() if real is None else real
        self.device = torch.device(device)  # PSNR/SSIM run here too (batched)
        off = f"{self.config_key}.fid=false {self.config_key}.kid=false"
        self.references = real[: self.psnr_references].cpu()
        real = real[: self.n]
        self.n_real = real.shape[0]
        if self.switches["fid"] or self.switches["kid"]:
            self.inception = InceptionFeatures(
                self.inception_weights,
                how_to_disable=off,
                dims=self.inception_dims,
                antialias=self.inception_antialias,
                weights_key=f"{self.config_key}.inception_weights",
            ).to(device)
            self.real["inception"] = self._real_features(self.inception, real)
        if self.switches["fid_mnist"]:
            model, self.classifier_meta = load_or_train_classifier(
                self.classifier_path, self.data_root, train_if_missing=self.train_classifier_if_missing
            )
            self.classifier = ClassifierFeatures(model, self.classifier_meta["sha256"]).to(device)
            self.real["classifier"] = self._real_features(self.classifier, real)
        for key, ext in (("inception", self.inception), ("classifier", self.classifier)):
            if ext is not None:  # FID's real statistics, accumulated once (reset() keeps them)
                self._fid[key] = FrechetInceptionDistance(feature=ext, reset_real_features=False, sync_on_compute=False)
                self._fid[key].update(self.real[key].double(), real=True)
        if self.floors and self.real:
            self._prepare_floors(real)

    def _prepare_floors(self, real: Tensor) -> None:
        """Real-vs-real FID per extractor at this N: the first n images of the other split vs ``real``."""
        if self.data_root is None:
            log.warning("%s: no data root, so no FID floors (set %s.data_root)", self.config_key, self.config_key)
            return
        other = load_mnist(self.data_root, self.floor_sets[0], n=real.shape[0])[0]  # (n, 1, 28, 28)
        for key, ext in (("inception", self.inception), ("classifier", self.classifier)):
            if ext is not None and key in self.real:
                self.floor_values[key] = real_floor(ext, other, real, self.cache_dir, self.floor_sets, self.real[key])

    def _real_features(self, extractor: FeatureExtractor, real: Tensor) -> Tensor:
        """Once per object; with a ``cache_dir`` once per split, N, extractor and data content."""
        return (
            extractor(real) if self.cache_dir is None else cached_features(extractor, real, self.cache_dir, self.split)
        )

    def _frechet(self, key: str, fake: Tensor) -> float:
        """FID between the real statistics held for ``key`` and generated features ``fake`` (N, d)."""
        fid = self._fid[key]
        fid.reset()  # the generated side only
        fid.update(fake.double(), real=False)
        return float(fid.compute())

    # ---- the metrics ---------------------------------------------------------------------------
    def compute(self, images: Tensor) -> dict[str, float]:
        """All enabled metrics for generated ``images`` (N, 1, 28, 28) in [−1, 1]; keys without prefix.
        ``timings`` gets the seconds each part took."""
        out: dict[str, float] = {}
        images = images.detach().cpu()
        self.timings = {}
        tick = time.perf_counter()
        if self.switches["psnr_ssim"] and self.references is not None:
            out["psnr"], out["ssim"] = psnr_ssim_against(images, self.references, device=self.device)
            self.timings["psnr_ssim_s"], tick = time.perf_counter() - tick, time.perf_counter()
        if self.inception is not None:
            fake = self.inception(images)  # (N, d), one pass for FID and KID
            if self.switches["fid"]:
                out["fid"] = self._frechet("inception", fake)
                out.update(self._trust("fid", "inception", fake, self.bootstrap_inception))
            if self.switches["kid"]:
                out["kid"], out["kid_std"] = kernel_distance(
                    self.inception, self.real["inception"], fake, self.kid_subsets, self.kid_subset_size, self.seed
                )
            self.timings["inception_s"], tick = time.perf_counter() - tick, time.perf_counter()
        if self.classifier is not None:
            fake = self.classifier(images)  # (N, d)
            out["fid_mnist"] = self._frechet("classifier", fake)
            out.update(self._trust("fid_mnist", "classifier", fake, True))
            self.last_predictions = self.classifier.predict(images)  # (N,)
            coverage = class_coverage(self.last_predictions, min_share=self.min_mode_share)
            out["class_entropy"], out["modes_covered"] = coverage["class_entropy"], float(coverage["modes_covered"])
            self.timings["classifier_s"] = time.perf_counter() - tick
        return out

    def _trust(self, name: str, key: str, fake: Tensor, bootstrap: bool) -> dict[str, float]:
        """``<name>_floor`` (real vs real, same N) and, when asked, ``<name>_ci_low``/``_ci_high``."""
        out = {f"{name}_floor": self.floor_values[key]} if key in self.floor_values else {}
        if bootstrap and self.bootstrap > 0:
            extractor = self.inception if key == "inception" else self.classifier
            assert extractor is not None
            low, high = bootstrap_fid(extractor, self.real[key], fake, self.bootstrap, self.confidence, self.seed)
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
        return out

    def settings(self, sampler: dict[str, Any] | None = None) -> dict[str, Any]:
        """What each metric is computed on (``sampler``: how the samples were made)."""
        on = self.switches
        base = {"n_generated": self.n, "seed": self.seed, "sampler": sampler or {}}
        real = {"split": self.split, "n_real": self.n_real}
        s: dict[str, Any] = {"samples": base, "real": real}
        if self.floor_values:
            a, b = self.floor_sets
            s["floor"] = (
                f"FID (same extractor) between the first {self.n_real} {a} and the first {self.n_real} {b} images: "
                "disjoint real sets"
            )
        if self.bootstrap > 0:
            which = "fid_mnist" + (" and fid" if self.bootstrap_inception else "")
            s["bootstrap"] = (
                f"{which}: central {self.confidence:.0%} percentile interval over {self.bootstrap} resamples "
                f"(with replacement) of the generated set, real statistics fixed, seed {self.seed}"
            )
        if on["psnr_ssim"]:
            s["psnr/ssim"] = {
                "references": 0 if self.references is None else self.references.shape[0],
                "pixel_range": "[0, 1]",
                "data_range": 1.0,
                "per": "pair (generated, reference), then the mean",
                "ssim_window": "gaussian 11x11, sigma 1.5",
            }
        if self.inception is not None:
            ext = {
                "extractor": f"{self.inception.name}, {self.inception.num_features}-d",
                "weights": self.inception.weights,
                "input": "uint8 [0, 255], grayscale repeated to 3 channels, resized to 299 by the network",
                "resize": self.inception.resize,
            }
            if on["fid"]:
                s["fid"] = ext
            if on["kid"]:
                size = min(self.kid_subset_size, self.n, self.n_real)
                s["kid"] = {
                    **ext,
                    "subsets": 1 if size == self.n == self.n_real else self.kid_subsets,
                    "subset_size": size,
                }
        if self.classifier is not None:
            meta = self.classifier_meta
            s["fid_mnist"] = {
                "extractor": f"{self.classifier.name}, {self.classifier.num_features}-d penultimate",
                "weights": meta.get("path"),
                "test_accuracy": meta.get("test_accuracy"),
            }
            s["class_entropy"] = (
                "entropy (bits) of the predicted-digit histogram of the samples; uniform: log2(10) = 3.32"
            )
            s["modes_covered"] = f"digits predicted for >= {self.min_mode_share} x n/10 of the samples"
        return s
