"""Evaluate a checkpoint: ``python -m ddpm_lightning.evaluate ckpt_path=... n=1000 [sampler=ddim]``.

n samples from a fixed seed -> every enabled metric of ``evaluation.SampleQuality`` (settings: the
``metrics`` group, conf/metrics/, shared with the training callback) and ``evaluation.DenoisingQuality``
(``denoise``, the training callback ``DenoisingMetrics``' keys) -> ``<run dir>/metrics.json`` holding the
values, what each was computed on (N, sampler and its steps, real split, extractor and weights) and the timings, plus a
table on stdout. ``sampler=ddim`` (conf/sampler/) replaces the checkpoint's sampler.
"""

from __future__ import annotations

if __name__ == "__main__":  # a typo in an override fails here, before torch loads
    from ddpm_lightning.cli import check_argv

    check_argv("evaluate", ("sampler", "metrics"))

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.build import load_for_sampling
from ddpm_lightning.cli import entry, run_task
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.evaluation import DenoisingQuality, SampleQuality
from ddpm_lightning.lit.callbacks import save_grid
from ddpm_lightning.lit.data import load_mnist
from ddpm_lightning.lit.metric_callbacks import describe_sampler
from ddpm_lightning.lit.progress import SamplingBar
from ddpm_lightning.rundir import check_writable

log = logging.getLogger(__name__)


def computed_on(key: str, settings: dict[str, Any]) -> str:
    """A short 'computed on' line for the table (the JSON has the full settings)."""
    smp = settings.get("samples", {})
    real = settings.get("real", {})
    sampler = smp.get("sampler", {})
    gen = (
        f"{smp.get('n_generated')} samples ({sampler.get('name')}, {sampler.get('steps')} steps, "
        f"seed {smp.get('seed')})"
    )
    if key.endswith("_floor"):
        what = settings["fid" if key == "fid_floor" else "fid_mnist"]["extractor"]
        return f"{settings.get('floor', 'real vs real')}, {what}"
    if "_ci_" in key:
        return f"bootstrap: {settings.get('bootstrap', '')}"
    if key in ("psnr", "ssim"):
        return f"{gen} x {settings['psnr/ssim']['references']} {real['split']} images, pixels [0, 1]"
    if key in ("fid", "kid", "kid_std"):
        return f"{gen} vs {real['n_real']} {real['split']} images, {settings[key.split('_')[0]]['extractor']}"
    if key == "fid_mnist":
        return f"{gen} vs {real['n_real']} {real['split']} images, {settings['fid_mnist']['extractor']}"
    if key in ("class_entropy", "modes_covered"):
        return f"{gen}, digits predicted by the classifier"
    if key.startswith("denoise_"):
        d = settings["denoise"]
        return f"{d['images']}, noise seed {d['noise_seed']}, x0_hat clamped, pixels [0, 1]"
    return ""


def table(results: dict[str, float], settings: dict[str, Any]) -> str:
    rows = [(k, f"{v:.4f}", computed_on(k, settings)) for k, v in results.items()]
    w0, w1 = max([len("metric")] + [len(r[0]) for r in rows]), max([len("value")] + [len(r[1]) for r in rows])
    lines = [f"{'metric':<{w0}}  {'value':>{w1}}  computed on"] + [f"{k:<{w0}}  {v:>{w1}}  {c}" for k, v, c in rows]
    return "\n".join(lines)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    if not cfg.get("ckpt_path"):
        raise DDPMError("ckpt_path is required, e.g. ckpt_path=outputs/train/runs/<date>/<time>/checkpoints/last.ckpt")
    if int(cfg.n) < 2:
        raise DDPMError(f"n must be >= 2, got {cfg.n!r}")
    path = Path(cfg.output) if cfg.get("output") else Path(cfg.paths.output_dir) / "metrics.json"
    check_writable(path, "output", "choose another with output=<file.json>")  # before sampling, not after
    hint = "set DDPM_DATA_DIR or data_root=<a folder holding MNIST/raw/>"  # evaluate's key (not train's data.root)
    load_mnist(cfg.data_root, str(cfg.split), hint=hint, n=0)  # missing or bad data fails here, before the checkpoint
    module, device = load_for_sampling(cfg.ckpt_path, cfg.get("device"), cfg.get("precision"))
    sampler = instantiate(cfg.sampler) if cfg.get("sampler") else None
    chain = module.make_sampler(sampler)  # built once; an incompatible sampler fails here
    sampler_info = describe_sampler(chain)
    quality = SampleQuality(config_key="metrics", **OmegaConf.to_container(cfg.metrics, resolve=True))
    results: dict[str, float] = {}
    settings: dict[str, Any] = {"checkpoint": str(Path(cfg.ckpt_path).resolve()), "device": str(device)}
    out_dir = Path(cfg.paths.output_dir)
    timings: dict[str, float] = {}
    if quality.enabled:
        quality.prepare(device=device)  # missing weights fail here, before sampling
        start = time.perf_counter()
        images = module.generate(
            quality.n,
            seed=quality.seed,
            sampler=chain,
            batch_size=int(cfg.batch_size),
            callback=SamplingBar(f"Sampling {quality.n} images"),
        )  # (n, 1, 28, 28)
        generate_s = time.perf_counter() - start
        log.info("sampled %d images in %.1f s (%s)", quality.n, generate_s, sampler_info)
        results.update(quality.compute(images))
        timings = {"generate_s": generate_s, **quality.timings}
        settings.update(quality.settings(sampler_info))
        settings["samples"]["precision"] = module.sample_precision  # the network's precision while sampling
        if int(cfg.save_grid) > 0:
            save_grid(images[: int(cfg.save_grid)], out_dir / "samples.png")
    if cfg.get("denoise") is not None:
        d = cfg.denoise
        den = DenoisingQuality(n=int(d.n), timesteps=d.timesteps, seed=int(d.seed), config_key="denoise")
        x0 = load_mnist(cfg.data_root, str(cfg.split), hint=hint, n=den.n)[0]  # (B, 1, 28, 28)
        results.update(den.compute(module, module.process, x0))
        settings["denoise"] = {**den.settings(module.schedule.T), "images": f"first {x0.shape[0]} {cfg.split} images"}
    if not results:
        raise DDPMError("every metric is switched off (metrics.*=false, denoise=null); nothing to evaluate")
    report: dict[str, Any] = {"metrics": results, "settings": settings, "timings_s": timings}
    if quality.last_predictions is not None:
        report["class_counts"] = torch.bincount(quality.last_predictions, minlength=10).tolist()
    print(table(results, settings), flush=True)  # first: the numbers are on the terminal whatever happens next
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    except OSError as e:
        raise DDPMError(f"cannot write {path} ({e.strerror or e}); the table above holds the results") from None
    print(f"wrote {path}")
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_task(evaluate, cfg)


if __name__ == "__main__":
    entry(main, ("sampler", "metrics"), "evaluate")
