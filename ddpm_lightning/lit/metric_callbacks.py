"""Sample-quality and denoising metrics, logged at the end of validation every ``every_n_epochs`` epochs.

- ``GenerativeMetrics``: n samples from a fixed seed (``pl_module.generate``, the module's sampler or its
  own), scored by ``ddpm_lightning.evaluation.SampleQuality`` (settings: the ``conf/metrics/`` group):
  ``val/psnr``, ``val/ssim``, ``val/fid``, ``val/kid``/``val/kid_std``, ``val/fid_mnist``, ``val/class_entropy``,
  ``val/modes_covered``, floors and intervals; the predicted digits as the TensorBoard histogram
  ``val/predicted_class``. Each switchable.
- ``DenoisingMetrics``: ``ddpm_lightning.evaluation.DenoisingQuality`` (x̂0 from one network call at fixed t)
  on a fixed validation batch: ``val/denoise_psnr_t<t>`` and ``val/denoise_ssim_t<t>``.

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

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.samplers import Sampler
from ddpm_lightning.evaluation.denoising import DenoisingQuality
from ddpm_lightning.evaluation.quality import SampleQuality
from ddpm_lightning.lit.callbacks import generate_shares
from ddpm_lightning.lit.module import DiffusionModule, SamplerFactory

log = logging.getLogger(__name__)


def describe_sampler(sampler: Sampler) -> dict[str, Any]:
    """Name, number of network calls and settings of a sampler, for the logged settings."""
    sampler.set_timesteps()
    info: dict[str, Any] = {"name": sampler.name, "steps": len(sampler.timesteps)}
    for key in ("variance", "eta", "num_steps", "order", "spacing"):
        if hasattr(sampler, key):
            info[key] = getattr(sampler, key)
    if sampler.clip_x0:  # recorded only when on, so the default settings read as before
        info["clip_x0"] = True
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
    """``SampleQuality`` of ``n`` samples from a fixed seed, every ``every_n_epochs`` epochs and at the last.

    ``sampler``: a sampler partial (null: the module's); ``batch_size``: images per sampling batch. Every other
    keyword is a ``SampleQuality`` setting (the ``conf/metrics/`` group nested under this callback's node);
    ``data_root`` null: the data module's root. ``config_key`` names this callback in error messages.
    ``last_epoch_only``: only at the last epoch (a final evaluation at another protocol than the per-epoch one);
    ``prefix``: the logged keys' (``<prefix>/fid``, ...; settings as the text ``metrics/<prefix>``).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        sampler: SamplerFactory | None = None,
        batch_size: int = 500,
        config_key: str = "callbacks.generative_metrics",
        last_epoch_only: bool = False,
        prefix: str = "val",
        **quality: Any,
    ) -> None:
        if every_n_epochs < 1:
            raise DDPMError(f"{config_key}: every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs, self.sampler, self.batch_size = every_n_epochs, sampler, batch_size
        self.last_epoch_only, self.prefix = last_epoch_only, prefix
        self.quality = SampleQuality(config_key=config_key, **quality)
        self.sampler_info: dict[str, Any] = {}
        self.chain: Sampler | None = None  # the sampler built from ``sampler`` once per run (setup)
        self._logged_settings = False

    @property
    def n(self) -> int:  # the number of samples (run_info's start line)
        return self.quality.n

    @property
    def switches(self) -> dict[str, bool]:  # which metrics are on (hparams' chart layout)
        return self.quality.switches

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Extractors and real features, once, before the first epoch: a missing weight file stops the run here."""
        if stage not in ("fit", "validate") or not self.quality.enabled:
            return
        if isinstance(pl_module, DiffusionModule):  # a sampler the degradation cannot use: fail now
            self.chain = pl_module.make_sampler(self.sampler)
            self.sampler_info = describe_sampler(self.chain)
        dm = getattr(trainer, "datamodule", None)
        if self.quality.data_root is None and getattr(dm, "root", None) is not None:
            self.quality.data_root = str(dm.root)
        real = None
        if self.quality.data_root is None:  # a data module without a root: its validation images
            if dm is None or not hasattr(dm, "val_images"):
                raise DDPMError(f"{self.quality.config_key}.data_root is needed: the data module has no MNIST root")
            real = dm.val_images[: max(self.quality.n, self.quality.psnr_references)]
        self.quality.prepare(real, trainer.strategy.root_device)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.quality.enabled or not isinstance(pl_module, DiffusionModule):
            return
        if not due(trainer, self.every_n_epochs):
            return
        if self.last_epoch_only and not (
            trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        ):
            return
        if not self._logged_settings:
            info = self.sampler_info or describe_sampler(pl_module.make_sampler(self.sampler))
            tag = "metrics/generative" if self.prefix == "val" else f"metrics/{self.prefix}"
            log_text(trainer, tag, self.quality.settings(info))
            self._logged_settings = True
        start = time.perf_counter()
        n = self.quality.n
        chain = self.chain or self.sampler  # built once in setup
        images = generate_shares(trainer, pl_module, n, self.quality.seed, chain, self.batch_size)  # (n, 1, 28, 28)
        generate_s = time.perf_counter() - start
        values = self.quality.compute(images)  # the same on every rank: the mean over ranks changes nothing
        timings = {"generate_s": generate_s, **self.quality.timings}
        pl_module.log_dict({f"{self.prefix}/{k}": v for k, v in values.items()}, sync_dist=True)
        time_key = "walltime/" if self.prefix == "val" else f"walltime/{self.prefix}_"
        pl_module.log_dict({f"{time_key}{k}": v for k, v in timings.items()}, sync_dist=True, reduce_fx="max")
        if self.quality.last_predictions is not None:
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    bins = np.arange(11) - 0.5  # one bin per digit
                    logger.experiment.add_histogram(
                        f"{self.prefix}/predicted_class",
                        self.quality.last_predictions.numpy(),
                        trainer.global_step,
                        bins=bins,
                    )


class DenoisingMetrics(pl.Callback):
    """``evaluation.DenoisingQuality`` (PSNR/SSIM of x̂0 against x0 at fixed ``timesteps``) of the first ``n``
    validation images, every ``every_n_epochs`` epochs and at the last."""

    def __init__(
        self,
        n: int = 64,
        timesteps: list[int] | None = None,
        seed: int = 0,
        every_n_epochs: int = 1,
        config_key: str = "callbacks.denoising_metrics",
    ) -> None:
        if n < 1 or every_n_epochs < 1:
            raise DDPMError(f"{config_key}: n and every_n_epochs must be >= 1, got {n}, {every_n_epochs}")
        self.quality = DenoisingQuality(n=n, timesteps=timesteps, seed=seed, config_key=config_key)
        self.n, self.every_n_epochs, self.config_key = n, every_n_epochs, config_key
        self.x0: Tensor | None = None
        self._logged_settings = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate") or not isinstance(pl_module, DiffusionModule):
            return
        self.quality.resolve_timesteps(pl_module.schedule.T)  # bad timesteps: fail before the first epoch
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "val_images"):
            self.x0 = dm.val_images[: self.n].clone()

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
            log_text(trainer, "metrics/denoising", self.quality.settings(pl_module.schedule.T))
            self._logged_settings = True
        values = self.quality.compute(pl_module, pl_module.process, self.x0)  # the same on every rank
        pl_module.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=True)
