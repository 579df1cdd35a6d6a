"""Callbacks: a fixed-seed sample grid every N epochs (TensorBoard image + PNG file).

``generate_shares``: n samples split over the DDP ranks, each rank its block with a seed of its own, gathered
on every rank (the grid here and the sample-quality metrics in metric_callbacks.py)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from ddpm_lightning.core.samplers import Sampler
from ddpm_lightning.lit.module import DiffusionModule, SamplerFactory

log = logging.getLogger(__name__)


def share(n: int, seed: int, rank: int, world_size: int) -> tuple[int, int]:
    """(count, seed) of ``rank``'s block of n samples: contiguous blocks in rank order, sizes differing by at
    most one, rank r seeded ``seed + r`` (one process: all n from ``seed``, as without DDP)."""
    base, extra = divmod(n, world_size)
    return base + (1 if rank < extra else 0), seed + rank


@torch.no_grad()
def generate_shares(
    trainer: pl.Trainer,
    pl_module: DiffusionModule,
    n: int,
    seed: int,
    sampler: Sampler | SamplerFactory | None = None,
    batch_size: int = 500,
) -> Tensor:
    """n samples (n, C, H, W) on every rank: each rank generates its ``share``, then one all_gather (every rank
    must call this). Lightning's all_gather needs equal shapes: blocks are padded to the largest, then trimmed."""
    world = trainer.world_size
    counts = [share(n, seed, r, world)[0] for r in range(world)]
    count, own_seed = share(n, seed, trainer.global_rank, world)
    if world == 1:
        return pl_module.generate(n, seed=seed, sampler=sampler, batch_size=batch_size)
    log.info("rank %d of %d samples %d of %d images, seed %d", trainer.global_rank, world, count, n, own_seed)
    part = pl_module.generate(max(count, 1), seed=own_seed, sampler=sampler, batch_size=batch_size)  # (≥count, C, H, W)
    padded = part.new_zeros((max(max(counts), 1), *part.shape[1:]))  # (m, C, H, W)
    padded[:count] = part[:count]
    gathered = pl_module.all_gather(padded)  # (world, m, C, H, W)
    return torch.cat([gathered[r, :c] for r, c in enumerate(counts)])


def to_grid(images: Tensor) -> Tensor:
    """(N, 1, H, W) in [−1, 1] -> (3, H', W') in [0, 1], a square-ish grid."""
    return make_grid((images + 1) / 2, nrow=max(1, int(math.ceil(math.sqrt(images.shape[0])))), padding=2)


def upscale(grid: Tensor, factor: int = 4) -> Tensor:
    """(C, H, W) -> (C, factor·H, factor·W), nearest neighbour: TensorBoard shows an image at its pixel
    size, and a 16-image grid of 28-px digits is only 122 px wide."""
    return grid.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)


def save_grid(images: Tensor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(to_grid(images.detach().cpu()), str(path))
    return path


class SampleGrid(pl.Callback):
    """Every ``every_n_epochs`` epochs, sample ``n`` images from a fixed seed with the module's sampler
    (or ``sampler`` if given), log them to TensorBoard as ``val/samples`` and write ``<dirpath>/epoch_XXX.png``.

    Sampled at the end of validation, with the weights validation uses (the EMA's under callbacks=ema);
    in an epoch without validation, at the end of the training epoch. Under DDP each rank samples its
    share (``generate_shares``); rank 0 writes the file."""

    def __init__(
        self,
        n: int = 16,
        every_n_epochs: int = 1,
        seed: int = 1234,
        dirpath: str | None = None,
        sampler: Sampler | SamplerFactory | None = None,
    ) -> None:
        if n < 1 or every_n_epochs < 1:
            raise ValueError(
                f"SampleGrid needs n >= 1 and every_n_epochs >= 1, got n={n}, every_n_epochs={every_n_epochs}"
            )
        self.n = n
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.dirpath = dirpath
        self.sampler = sampler
        self._sampled_epoch: int | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # at validation end, so that weights swapped in for validation (callbacks=ema) are the ones sampled
        if not trainer.sanity_checking:
            self._sample(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._sampled_epoch != trainer.current_epoch:  # no validation this epoch: sample the training weights
            self._sample(trainer, pl_module)

    def _sample(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        self._sampled_epoch = epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if not ((epoch + 1) % self.every_n_epochs == 0 or last):
            return
        if not isinstance(pl_module, DiffusionModule):
            return
        if self.sampler is not None and not isinstance(self.sampler, Sampler):
            self.sampler = pl_module.make_sampler(self.sampler)  # a factory: build the sampler once
        images = generate_shares(trainer, pl_module, self.n, self.seed, self.sampler)  # (n, 1, 28, 28), every rank
        if not trainer.is_global_zero:
            return
        if self.dirpath is not None:
            save_grid(images, Path(self.dirpath) / f"epoch_{epoch:03d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(
                    "val/samples", upscale(to_grid(images.cpu())), global_step=trainer.global_step
                )
