"""DiffusionModule: one batch from the data module through degradation → network → loss.

Training (Ho et al. 2020, Algorithm 1): t ~ U{1..T}, (z_t, target) = process.training_example(x0, t),
loss = ‖g(z_t, t) − target‖² (``process``: core/process.py, the schedule and degradation together),
optionally weighted per step (``loss_weighting``, core/loss_weighting.py: min-SNR-γ). Validation uses the
unweighted loss with a fixed generator per batch, so ``val/loss`` is comparable across epochs and runs,
weighted or not. Sampling goes through the configured sampler, built once from the process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from ddpm_lightning.core.degradations import Degradation
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.loss_weighting import MinSNR
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import Sampler
from ddpm_lightning.core.schedules import NoiseSchedule

SamplerFactory = Callable[..., Sampler]
StepCallback = Callable[[int, int], None]  # (steps done, steps in all): progress bars, interruption

CONFIG_KEY = "ddpm_config"  # the run's resolved config in every checkpoint; its ``module`` node rebuilds this module

# Sampling precision -> the autocast dtype of the network's forward (None: float32). Lightning's precision
# names, so ``module.sample_precision: ${trainer.precision}`` samples in the precision the run trains in.
AUTOCAST = {"32-true": None, "32": None, "64-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def _chunk_step(callback: StepCallback, k: int, chunks: int, done: int, total: int) -> None:
    """Chunk k's step ``done`` of ``total`` as one count over all ``chunks`` chunks."""
    callback(k * total + done, chunks * total)


class NonFiniteLossError(DDPMError):
    """Raised when the training loss is NaN or infinite: training stops before a NaN model is saved."""


class DiffusionModule(pl.LightningModule):
    def __init__(
        self,
        network: nn.Module,
        schedule: NoiseSchedule,
        degradation: Degradation,
        sampler: SamplerFactory,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        lr_scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        image_shape: Sequence[int] = (1, 28, 28),
        val_seed: int = 0,
        check_finite: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        sample_precision: str = "32-true",
        loss_weighting: MinSNR | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.schedule = schedule
        self.degradation = degradation
        self.sampler_factory = sampler
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=2e-4))
        self.lr_scheduler_factory = lr_scheduler  # (optimizer, total_steps=...) -> a per-step LR scheduler; None: none
        self.image_shape = tuple(int(s) for s in image_shape)  # (C, H, W) of generated images
        self.val_seed = val_seed
        self.check_finite = check_finite
        self.loss_weighting = loss_weighting  # w(t) of the training loss; None: uniform (Ho et al. 2020, eq. 14)
        self.set_sample_precision(sample_precision)
        if channels_last:  # speed option (benchmarks/): NHWC weights, so convolutions run channels-last
            self.network.to(memory_format=torch.channels_last)
        if compile:  # speed option: torch.compile in place, so state_dict keys (and checkpoints) are unchanged
            self.network.compile()
        self.sampler = self.make_sampler()  # built once; fails at start-up, not after an epoch, on a bad config
        # the epoch-mean training loss, kept in checkpoints so that a mid-epoch resume continues the mean
        # no NaN check per update (torchmetrics reads it to the host each step); check_finite guards the loss
        self.train_loss_mean = MeanMetric(nan_strategy="disable")
        # (global step, epoch, batch index, batch, loss) of each step since the last finiteness check
        self._unchecked: list[tuple[int, int, int, Tensor, Tensor]] = []
        self._resumed_loss: dict[str, Any] | None = None
        # n images -> a StepCallback for that generate() call; set by lit/progress.py's SamplingProgress
        self.sampling_progress: Callable[[int], StepCallback] | None = None

    @property
    def process(self) -> DiffusionProcess:
        """The diffusion process of this module's schedule and degradation (references, no state of its own)."""
        return DiffusionProcess(self.schedule, self.degradation)

    # ---- the training path -------------------------------------------------------------------
    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        return self.network(z, t)

    def diffusion_loss(
        self, x0: Tensor, generator: torch.Generator | None = None, weighted: bool = True
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(the MSE loss of one batch x0 (B, C, H, W), the batch's degradation statistics: DES entropy and scale).
        ``weighted``: each example's MSE times ``loss_weighting``'s w(t) when one is set."""
        b = x0.shape[0]
        gen_device = generator.device if generator is not None else x0.device
        t = torch.randint(1, self.schedule.T + 1, (b,), generator=generator, device=gen_device).to(x0.device)  # (B,)
        example = self.process.training_example(x0, t, generator)  # z_t, target: (B, C, H, W) each
        output = self.network(example.z_t, t)  # (B, C, H, W)
        if not weighted or self.loss_weighting is None:
            return F.mse_loss(output, example.target), example.stats
        per_example = (output.float() - example.target.float()).pow(2).flatten(1).mean(dim=1)  # (B,)
        weights = self.loss_weighting(self.schedule, t, self.process.prediction)  # (B,)
        return (weights * per_example).mean(), example.stats

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x0 = batch[0]  # (B, 1, 28, 28) in [−1, 1]
        loss, stats = self.diffusion_loss(x0)
        if self.check_finite:  # the loss stays on the device; raise_if_non_finite reads a window of them at once
            self._unchecked.append((self.global_step, self.current_epoch, batch_idx, x0, loss.detach()))
        if self._resumed_loss is not None:  # first batch after a resume: the sum and count of the batches before it
            if self._resumed_loss.pop("epoch") == self.current_epoch:
                for name, value in self._resumed_loss.items():
                    setattr(self.train_loss_mean, name, value.to(self.device))
            self._resumed_loss = None
        self.train_loss_mean(loss.detach(), x0.shape[0])  # weighted by batch size
        # not prog_bar: Lightning would read it to the host every step; lit/progress.TrainProgressBar shows it
        # when it redraws
        self.log("train/loss", self.train_loss_mean, on_step=True, on_epoch=True, batch_size=x0.shape[0])
        for name, value in stats.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=x0.shape[0], sync_dist=True)
        return loss

    def raise_if_non_finite(self) -> None:
        """Raise ``NonFiniteLossError`` if a loss since the last check was NaN/inf: one host read for all of them.
        Called every ``log_every_n_steps`` steps, before validation and before every checkpoint is written."""
        if not self._unchecked:
            return
        steps, self._unchecked = self._unchecked, []
        finite = torch.isfinite(torch.stack([s[-1] for s in steps]))  # (steps,)
        if bool(finite.all()):
            return
        step, epoch, batch_idx, x0, loss = steps[int((~finite).nonzero()[0])]  # the first non-finite one
        raise NonFiniteLossError(
            f"non-finite training loss ({loss.item()}) at global step {step}, epoch {epoch}, "
            f"batch {batch_idx}: batch min {x0.min().item():.4g}, max {x0.max().item():.4g}, "
            f"mean {x0.mean().item():.4g}, std {x0.std().item():.4g}, finite {bool(torch.isfinite(x0).all())}"
        )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if len(self._unchecked) >= max(1, self.trainer.log_every_n_steps):
            self.raise_if_non_finite()

    def on_validation_start(self) -> None:
        self.raise_if_non_finite()

    def on_train_epoch_end(self) -> None:
        self.raise_if_non_finite()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x0 = batch[0]
        generator = torch.Generator(device="cpu").manual_seed(self.val_seed * 1_000_003 + batch_idx)
        loss, _ = self.diffusion_loss(x0, generator, weighted=False)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=x0.shape[0], sync_dist=True)

    def build_optimizer(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.network.parameters())

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """The optimizer, with the configured LR scheduler stepped after every optimizer step (Lightning's
        ``interval: step``); the scheduler's partial gets ``total_steps``, the run's optimizer steps."""
        optimizer = self.build_optimizer()
        if self.lr_scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.lr_scheduler_factory(optimizer, total_steps=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- sampling ----------------------------------------------------------------------------
    def make_sampler(self, factory: SamplerFactory | None = None) -> Sampler:
        """A sampler of this module's process from ``factory`` (a config partial; None: the module's own,
        ``self.sampler``). A sampler the degradation cannot invert fails here, in ``Sampler.__init__``."""
        if factory is None and getattr(self, "sampler", None) is not None:
            return self.sampler
        return (factory or self.sampler_factory)(self.process)

    def set_sample_precision(self, precision: str) -> None:
        if str(precision) not in AUTOCAST:
            raise DDPMError(f"sample precision must be one of {list(AUTOCAST)}, got {precision!r}")
        self.sample_precision = str(precision)

    def sampling_autocast(self) -> AbstractContextManager[Any]:
        """The network's forward during sampling runs under ``sample_precision``'s autocast (bf16 or fp16
        matmuls/convolutions); the sampler's own arithmetic stays float32."""
        dtype = AUTOCAST[self.sample_precision]
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        seed: int = 0,
        sampler: Sampler | SamplerFactory | None = None,
        batch_size: int = 500,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """n images (n, *image_shape), clamped to [−1, 1], from a generator of its own seeded with ``seed``.

        The training RNG is untouched, so grids are comparable across epochs and runs. The network runs
        in ``sample_precision`` (by default the run's training precision; float32 for ``32-true``).
        ``sampler``: a built Sampler, a factory (a config partial) or None (the module's own).
        ``callback(done, total)`` (else ``sampling_progress(n)``) sees the steps of all chunks as one count.
        """
        if callback is None and self.sampling_progress is not None:
            callback = self.sampling_progress(n)
        chunks = -(-n // batch_size)
        was_training = self.training
        self.eval()
        chain = sampler if isinstance(sampler, Sampler) else self.make_sampler(sampler)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        shape = self.image_shape  # (C, H, W)
        out = []
        with self.sampling_autocast():
            for k, start in enumerate(range(0, n, batch_size)):
                b = min(batch_size, n - start)
                step = None if callback is None else partial(_chunk_step, callback, k, chunks)
                out.append(chain.sample(self.network, (b, *shape), generator, self.device, step))
        self.train(was_training)
        return torch.cat(out).clamp(-1, 1)

    # ---- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.raise_if_non_finite()  # never a checkpoint of a model trained on a non-finite loss
        checkpoint["train_loss_mean"] = {
            "epoch": self.current_epoch,
            **{k: v.detach().cpu() for k, v in self.train_loss_mean.metric_state.items()},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_loss = dict(checkpoint["train_loss_mean"]) if "train_loss_mean" in checkpoint else None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())
