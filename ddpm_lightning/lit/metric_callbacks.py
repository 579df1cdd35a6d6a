"""Sample-quality and denoising metrics, logged at the end of validation every ``every_n_epochs`` epochs.

- ``GenerativeMetrics``: n samples from a fixed seed (``pl_module.generate``, the module's sampler or its
  own) against n real images (the first n of ``split``, MNIST test = the validation split):
  ``val/psnr``, ``val/ssim`` (each sample against ``psnr_references`` real images, mean over pairs, pixels
  in [0, 1]), ``val/fid`` and ``val/kid``/``val/kid_std`` (Inception pool3, 2048-d), ``val/fid_mnist``
  (the MNIST classifier's 64-d features), ``val/class_entropy`` and ``val/modes_covered`` (the predicted
  digits; their histogram is the TensorBoard histogram ``val/predicted_class``). Each switchable.
- ``DenoisingMetrics``: x̂0 from one network call on a fixed validation batch at fixed t,
  ``val/denoise_psnr_t<t>`` and ``val/denoise_ssim_t<t>``.

Under DDP every rank takes part (README "Sweeps"): ``GenerativeMetrics`` samples ``share(n, ...)``, its
block of the n samples with a seed of its own, gathers all n and computes the metrics on them, so every rank
logs the same values (``DenoisingMetrics`` computes the same values on every rank). No rank waits alone in a
collective that the others never reach.

Both write what their numbers were computed on (N, sampler, steps, extractor, ...) once per run as
TensorBoard text (``metrics/<callback>``); ``settings`` returns the same dict (evaluate's JSON).
Everything heavy (extractors, real features) is set up in ``setup``, before the first epoch: a missing
weight file stops the run there with one line, never mid-way.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from ddpm_lightning.classifier import load_or_train_classifier
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.samplers import Sampler
from ddpm_lightning.lit.callbacks import generate_shares
from ddpm_lightning.lit.confidence import bootstrap_fid, real_floor
from ddpm_lightning.lit.data import load_mnist
from ddpm_lightning.lit.metrics import (
    ClassifierFeatures,
    FeatureExtractor,
    InceptionFeatures,
    cached_features,
    class_coverage,
    frechet_distance,
    kernel_distance,
    psnr_ssim_against,
    to_unit,
)
from ddpm_lightning.lit.module import DiffusionModule, SamplerFactory

log = logging.getLogger(__name__)


def describe_sampler(sampler: Sampler) -> dict[str, Any]:
    """Name, number of network calls and settings of a sampler, for the logged settings."""
    sampler.set_timesteps()
    info: dict[str, Any] = {"name": sampler.name, "steps": len(sampler.timesteps)}
    for key in ("variance", "eta", "num_steps", "order", "spacing"):
        if hasattr(sampler, key):
            info[key] = getattr(sampler, key)
    return info


def due(trainer: pl.Trainer, every_n_epochs: int) -> bool:
    """Whether this validation end is an evaluation: every ``every_n_epochs`` epochs and the last (the same
    answer on every rank: each one takes part)."""
    if trainer.sanity_checking:
        return False
    epoch = trainer.current_epoch
    last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
    return (epoch + 1) % every_n_epochs == 0 or last


def log_text(trainer: pl.Trainer, tag: str, settings: dict[str, Any]) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            text = "```\n" + json.dumps(settings, indent=2, default=str) + "\n```"
            logger.experiment.add_text(tag, text, global_step=trainer.global_step)


class GenerativeMetrics(pl.Callback):
    """Sample-quality metrics of ``n`` samples from ``seed`` against the first ``n`` real ``split`` images.

    Switches: ``psnr_ssim``, ``fid``, ``kid`` (Inception, ``inception_dims`` features, weights from
    ``inception_weights`` / $DDPM_FID_WEIGHTS / download; ``inception_antialias`` false: the TF1 /
    torch-fidelity resize of the reference FID, true: PyTorch's antialiased one), ``fid_mnist`` (plus class entropy and modes;
    ``classifier_path`` null: the packaged classifier). ``cache_dir``: where real features are cached
    (null: in memory, once per run). ``sampler``: a sampler partial (null: the module's).
    ``config_key`` names this callback in error messages.
    """

    def __init__(
        self,
        n: int = 1000,
        every_n_epochs: int = 1,
        seed: int = 1234,
        sampler: SamplerFactory | None = None,
        batch_size: int = 500,
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
        config_key: str = "callbacks.generative_metrics",
        floors: bool = True,
        bootstrap: int = 0,
        bootstrap_inception: bool = False,
        confidence: float = 0.95,
    ) -> None:
        if n < 2 or every_n_epochs < 1 or psnr_references < 1:
            raise DDPMError(
                f"{config_key}: n must be >= 2, every_n_epochs and psnr_references >= 1; "
                f"got {n}, {every_n_epochs}, {psnr_references}"
            )
        if split not in ("train", "test"):
            raise DDPMError(f"{config_key}.split must be 'train' or 'test', got {split!r}")
        self.n, self.every_n_epochs, self.seed, self.sampler, self.batch_size = n, every_n_epochs, seed, sampler, batch_size
        self.switches = {"psnr_ssim": psnr_ssim, "fid": fid, "kid": kid, "fid_mnist": fid_mnist}
        self.psnr_references, self.kid_subsets, self.kid_subset_size = psnr_references, kid_subsets, kid_subset_size
        self.inception_dims, self.inception_antialias = inception_dims, inception_antialias
        self.min_mode_share = min_mode_share
        self.inception_weights, self.classifier_path = inception_weights, classifier_path
        self.train_classifier_if_missing = train_classifier_if_missing
        self.cache_dir, self.data_root, self.split, self.config_key = cache_dir, data_root, split, config_key
        if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0 or not 0 < confidence < 1:
            raise DDPMError(f"{config_key}: bootstrap must be an integer >= 0 and confidence in (0, 1), got {bootstrap!r}, {confidence!r}")
        self.floors, self.bootstrap, self.bootstrap_inception, self.confidence = floors, bootstrap, bootstrap_inception, confidence
        self.floor_values: dict[str, float] = {}  # extractor -> real-vs-real FID at this N
        self.floor_sets: tuple[str, str] = ("train" if split == "test" else "test", split)
        self.inception: InceptionFeatures | None = None
        self.classifier: ClassifierFeatures | None = None
        self.classifier_meta: dict[str, Any] = {}
        self.real: dict[str, Tensor] = {}  # extractor -> real features (N, d)
        self.references: Tensor | None = None  # (R, 1, 28, 28)
        self.n_real = 0
        self.last_predictions: Tensor | None = None
        self.timings: dict[str, float] = {}
        self.sampler_info: dict[str, Any] = {}
        self.chain: Sampler | None = None  # the sampler built from ``sampler`` once per run (setup)
        self._logged_settings = False

    # ---- set-up: extractors and real features, once ------------------------------------------
    def real_images(self, trainer: pl.Trainer | None = None) -> Tensor:
        """The first n images of ``split`` from ``data_root`` (default: the data module's root)."""
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        root = self.data_root or getattr(dm, "root", None)
        if root is not None:
            images, _ = load_mnist(root, self.split)
        elif dm is not None and hasattr(dm, "val_images"):
            images = dm.val_images
        else:
            raise DDPMError(f"{self.config_key}.data_root is needed: the data module has no MNIST root")
        if images.shape[0] < self.n:
            log.warning("%s: only %d real %s images for n=%d", self.config_key, images.shape[0], self.split, self.n)
        return images[: max(self.n, self.psnr_references)]

    def prepare(self, real: Tensor, device: torch.device | str = "cpu", data_root: str | None = None) -> None:
        """Build the enabled extractors and the features of the first n ``real`` images (from the cache
        when there); the first ``psnr_references`` are the PSNR/SSIM references."""
        off = f"{self.config_key}.fid=false {self.config_key}.kid=false"
        self.references = real[: self.psnr_references].cpu()
        real = real[: self.n]
        self.n_real = real.shape[0]
        if self.switches["fid"] or self.switches["kid"]:
            self.inception = InceptionFeatures(
                self.inception_weights, how_to_disable=off, dims=self.inception_dims, antialias=self.inception_antialias,
                weights_key=f"{self.config_key}.inception_weights",
            ).to(device)
            self.real["inception"] = self._real_features(self.inception, real)
        if self.switches["fid_mnist"]:
            model, self.classifier_meta = load_or_train_classifier(
                self.classifier_path, data_root, train_if_missing=self.train_classifier_if_missing
            )
            self.classifier = ClassifierFeatures(model, self.classifier_meta["sha256"]).to(device)
            self.real["classifier"] = self._real_features(self.classifier, real)
        if self.floors and self.real:
            self._prepare_floors(real, data_root)

    def _prepare_floors(self, real: Tensor, data_root: str | None) -> None:
        """Real-vs-real FID per extractor at this N: the first n images of the other split vs ``real``."""
        if data_root is None:
            log.warning("%s: no data root, so no FID floors (set %s.data_root)", self.config_key, self.config_key)
            return
        other = load_mnist(data_root, self.floor_sets[0])[0][: real.shape[0]]  # (n, 1, 28, 28)
        for key, ext in (("inception", self.inception), ("classifier", self.classifier)):
            if ext is not None and key in self.real:
                self.floor_values[key] = real_floor(ext, other, real, self.cache_dir, self.floor_sets, self.real[key])

    def _real_features(self, extractor: FeatureExtractor, real: Tensor) -> Tensor:
        """Once per run; with a ``cache_dir`` once per split, N, extractor and data content."""
        return extractor(real) if self.cache_dir is None else cached_features(extractor, real, self.cache_dir, self.split)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate") or not any(self.switches.values()):
            return
        if isinstance(pl_module, DiffusionModule):  # a sampler the degradation cannot use: fail now
            self.chain = pl_module.make_sampler(self.sampler)
            self.sampler_info = describe_sampler(self.chain)
        dm = getattr(trainer, "datamodule", None)
        root = self.data_root or getattr(dm, "root", None)
        self.prepare(self.real_images(trainer), trainer.strategy.root_device, root)

    # ---- the metrics ---------------------------------------------------------------------------
    def compute(self, images: Tensor) -> dict[str, float]:
        """All enabled metrics for generated ``images`` (N, 1, 28, 28) in [−1, 1]; keys without prefix."""
        out: dict[str, float] = {}
        images = images.detach().cpu()
        tick = time.perf_counter()
        if self.switches["psnr_ssim"] and self.references is not None:
            out["psnr"], out["ssim"] = psnr_ssim_against(images, self.references)
            self.timings["psnr_ssim_s"], tick = time.perf_counter() - tick, time.perf_counter()
        if self.inception is not None:
            fake = self.inception(images)  # (N, d), one pass for FID and KID
            if self.switches["fid"]:
                out["fid"] = frechet_distance(self.inception, self.real["inception"], fake)
                out.update(self._trust("fid", "inception", fake, self.bootstrap_inception))
            if self.switches["kid"]:
                out["kid"], out["kid_std"] = kernel_distance(
                    self.inception, self.real["inception"], fake, self.kid_subsets, self.kid_subset_size, self.seed
                )
            self.timings["inception_s"], tick = time.perf_counter() - tick, time.perf_counter()
        if self.classifier is not None:
            fake = self.classifier(images)  # (N, d)
            out["fid_mnist"] = frechet_distance(self.classifier, self.real["classifier"], fake)
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

    def settings(self, sampler: dict[str, Any]) -> dict[str, Any]:
        """What each metric is computed on."""
        on = self.switches
        base = {"n_generated": self.n, "seed": self.seed, "sampler": sampler}
        real = {"split": self.split, "n_real": self.n_real}
        s: dict[str, Any] = {"samples": base, "real": real}
        if self.floor_values:
            a, b = self.floor_sets
            s["floor"] = f"FID (same extractor) between the first {self.n_real} {a} and the first {self.n_real} {b} images: disjoint real sets"
        if self.bootstrap > 0:
            which = "fid_mnist" + (" and fid" if self.bootstrap_inception else "")
            s["bootstrap"] = (f"{which}: central {self.confidence:.0%} percentile interval over {self.bootstrap} resamples "
                              f"(with replacement) of the generated set, real statistics fixed, seed {self.seed}")
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
                s["kid"] = {**ext, "subsets": 1 if size == self.n == self.n_real else self.kid_subsets, "subset_size": size}
        if self.classifier is not None:
            meta = self.classifier_meta
            s["fid_mnist"] = {
                "extractor": f"{self.classifier.name}, {self.classifier.num_features}-d penultimate",
                "weights": meta.get("path"),
                "test_accuracy": meta.get("test_accuracy"),
            }
            s["class_entropy"] = "entropy (bits) of the predicted-digit histogram of the samples; uniform: log2(10) = 3.32"
            s["modes_covered"] = f"digits predicted for >= {self.min_mode_share} x n/10 of the samples"
        return s

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not any(self.switches.values()) or not isinstance(pl_module, DiffusionModule):
            return
        if not due(trainer, self.every_n_epochs):
            return
        if not self._logged_settings:
            info = self.sampler_info or describe_sampler(pl_module.make_sampler(self.sampler))
            log_text(trainer, "metrics/generative", self.settings(info))
            self._logged_settings = True
        start = time.perf_counter()
        chain = self.chain or self.sampler
        images = generate_shares(trainer, pl_module, self.n, self.seed, chain, self.batch_size)  # (n, 1, 28, 28)
        self.timings = {"generate_s": time.perf_counter() - start}
        values = self.compute(images)  # the same on every rank: the mean over ranks changes nothing
        pl_module.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=True)
        pl_module.log_dict({f"time/{k}": v for k, v in self.timings.items()}, sync_dist=True, reduce_fx="max")
        if self.last_predictions is not None:
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    bins = np.arange(11) - 0.5  # one bin per digit
                    logger.experiment.add_histogram("val/predicted_class", self.last_predictions.numpy(), trainer.global_step, bins=bins)


class DenoisingMetrics(pl.Callback):
    """PSNR/SSIM of x̂0 against x0 for the first ``n`` validation images at fixed ``timesteps``.

    z_t comes from the module's own process with noise from ``seed`` (fixed per t), then
    x̂0 = ``process.x0_from_output``: (z_t − √(1−ᾱ_t)·ĝ)/√ᾱ_t for ε-prediction (Ho et al. 2020, eq. 4 solved
    for x0), or the network output itself for a degradation predicting 'x0'. x̂0 is clamped to [−1, 1];
    pixels compared in [0, 1].
    ``timesteps`` null: round(0.1·T), round(0.5·T), round(0.9·T) (100, 500, 900 at T = 1000).
    """

    def __init__(self, n: int = 64, timesteps: list[int] | None = None, seed: int = 0, every_n_epochs: int = 1,
                 config_key: str = "callbacks.denoising_metrics") -> None:
        if n < 1 or every_n_epochs < 1:
            raise DDPMError(f"{config_key}: n and every_n_epochs must be >= 1, got {n}, {every_n_epochs}")
        self.n, self.timesteps, self.seed, self.every_n_epochs, self.config_key = n, timesteps, seed, every_n_epochs, config_key
        self.x0: Tensor | None = None
        self._logged_settings = False

    def resolve_timesteps(self, T: int) -> list[int]:
        ts = list(self.timesteps) if self.timesteps else sorted({max(1, round(f * T)) for f in (0.1, 0.5, 0.9)})
        bad = [t for t in ts if not (isinstance(t, int) and 1 <= t <= T)]
        if bad:
            raise DDPMError(f"{self.config_key}.timesteps must be integers in [1, T={T}], got {bad}")
        return ts

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate") or not isinstance(pl_module, DiffusionModule):
            return
        self.resolve_timesteps(pl_module.schedule.T)  # bad timesteps: fail before the first epoch
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "val_images"):
            self.x0 = dm.val_images[: self.n].clone()

    @torch.no_grad()
    def compute(self, module: DiffusionModule, x0: Tensor) -> dict[str, float]:
        """{'denoise_psnr_t<t>', 'denoise_ssim_t<t>'} for x0 (B, 1, 28, 28) in [−1, 1]."""
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

        was_training = module.training
        module.eval()  # DES keeps its running scale untouched in eval mode
        x0 = x0.to(module.device)
        out: dict[str, float] = {}
        for t in self.resolve_timesteps(module.schedule.T):
            generator = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + t)
            tt = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)  # (B,)
            z_t, _ = module.process.training_example(x0, tt, generator)  # (B, 1, 28, 28)
            x0_hat = module.process.x0_from_output(z_t, t, module(z_t, tt))  # (B, 1, 28, 28)
            pred, target = to_unit(x0_hat.clamp(-1, 1)), to_unit(x0)
            out[f"denoise_psnr_t{t}"] = float(peak_signal_noise_ratio(pred, target, data_range=1.0, dim=(1, 2, 3)))
            out[f"denoise_ssim_t{t}"] = float(structural_similarity_index_measure(pred, target, data_range=1.0))
        module.train(was_training)
        return out

    def settings(self, T: int) -> dict[str, Any]:
        return {"images": f"first {self.n} validation images", "timesteps": self.resolve_timesteps(T), "noise_seed": self.seed,
                "x0_hat": "(z_t - sqrt(1-abar_t) g) / sqrt(abar_t) (eps) or g (x0), clamped to [-1, 1]", "pixel_range": "[0, 1]"}

    def _first_val_images(self, trainer: pl.Trainer) -> Tensor | None:
        """The first n images of the validation loader(s), for data modules without ``val_images``."""
        loaders = trainer.val_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        got: list[Tensor] = []
        for loader in loaders:
            for batch in loader or []:
                got.append((batch[0] if isinstance(batch, (list, tuple)) else batch).cpu())
                if sum(x.shape[0] for x in got) >= self.n:
                    return torch.cat(got)[: self.n]
        return torch.cat(got)[: self.n] if got else None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, DiffusionModule) or not due(trainer, self.every_n_epochs):
            return
        if self.x0 is None:
            self.x0 = self._first_val_images(trainer)
            if self.x0 is None:
                raise DDPMError(f"{self.config_key}: no validation images to measure denoising on")
        if not self._logged_settings:
            log_text(trainer, "metrics/denoising", self.settings(pl_module.schedule.T))
            self._logged_settings = True
        values = self.compute(pl_module, self.x0)  # the same images and noise on every rank: the same values
        pl_module.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=True)
