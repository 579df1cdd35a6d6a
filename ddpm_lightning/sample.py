"""Sample from a trained checkpoint: ``python -m ddpm_lightning.sample ckpt_path=... n=64``.

Writes a PNG grid (and, with ``save_tensor=true``, the images as a (n, 1, 28, 28) tensor in [−1, 1])
into the run directory, or to ``output`` if given. ``sampler=ddim`` replaces the checkpoint's sampler.
"""

from __future__ import annotations

if __name__ == "__main__":  # a typo in an override fails here, before torch loads
    from ddpm_lightning.cli import check_argv

    check_argv("sample", ("sampler",))

import logging
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ddpm_lightning.build import load_for_sampling
from ddpm_lightning.cli import entry, run_task
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.callbacks import save_grid
from ddpm_lightning.lit.progress import SamplingBar
from ddpm_lightning.rundir import check_writable

log = logging.getLogger(__name__)


def sample(cfg: DictConfig) -> Path:
    if not cfg.get("ckpt_path"):
        raise DDPMError("ckpt_path is required, e.g. ckpt_path=outputs/train/runs/<date>/<time>/checkpoints/last.ckpt")
    if int(cfg.n) < 1:
        raise DDPMError(f"n must be >= 1, got {cfg.n!r}")
    out = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / "samples.png"
    check_writable(out, "output", "choose another with output=<file.png>")  # before sampling, not after
    module, device = load_for_sampling(cfg.ckpt_path, cfg.get("device"), cfg.get("precision"))
    sampler = instantiate(cfg.sampler) if cfg.get("sampler") else None
    images = module.generate(
        int(cfg.n),
        seed=int(cfg.seed),
        sampler=sampler,
        batch_size=int(cfg.batch_size),
        callback=SamplingBar(f"Sampling {int(cfg.n)} images"),
    )
    save_grid(images, out)
    log.info("wrote %d samples to %s", images.shape[0], out)
    if cfg.get("save_tensor"):
        torch.save(images.cpu(), out.with_suffix(".pt"))
        log.info("wrote the tensor to %s", out.with_suffix(".pt"))
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    run_task(sample, cfg)


if __name__ == "__main__":
    entry(main, ("sampler",), "sample")
