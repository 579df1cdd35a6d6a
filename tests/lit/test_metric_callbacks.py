"""The metric callbacks in a run: every metric logged each epoch, real features once, denoising x̂0, start-up errors,
config."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddpm_lightning.build import build_module
from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.evaluation import DenoisingQuality, SampleQuality
from ddpm_lightning.lit.data import MNISTDataModule, load_mnist
from ddpm_lightning.lit.metric_callbacks import DenoisingMetrics, GenerativeMetrics
from tests.helpers.config import compose_train
from tests.helpers.run import FID_WEIGHTS, TINY, run_cli


def _compose(*overrides: str):
    return compose_train(*overrides)


@pytest.fixture(scope="module")
def weights() -> Path:
    if not FID_WEIGHTS.is_file():
        pytest.fail(f"Inception weights not found at {FID_WEIGHTS} (set DDPM_FID_WEIGHTS)")
    return FID_WEIGHTS


def _scalars(logdir: Path) -> tuple[dict[str, list[int]], EventAccumulator]:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


@pytest.mark.e2e
def test_tiny_run_logs_every_metric_each_epoch(tmp_path: Path, data_dir: Path, weights: Path) -> None:
    module = build_module(_compose("T=20"))
    dm = MNISTDataModule(root=str(data_dir), batch_size=32, train_subset=64, val_subset=32, download=False)
    gen = GenerativeMetrics(
        n=4,
        kid_subsets=3,
        psnr_references=20,
        inception_weights=str(weights),
        inception_dims=64,
        cache_dir=str(tmp_path / "cache"),
        bootstrap=5,
    )
    den = DenoisingMetrics(n=8, timesteps=[1, 10, 20])
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=1,
        accelerator="cpu",
        logger=TensorBoardLogger(tmp_path, name="tb", version=""),
        callbacks=[gen, den],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, dm)

    keys = ["psnr", "ssim", "fid", "kid", "kid_std", "fid_mnist", "class_entropy", "modes_covered"]
    keys += ["fid_floor", "fid_mnist_floor", "fid_mnist_ci_low", "fid_mnist_ci_high"]  # floors: train[:4] vs test[:4]
    keys += [f"denoise_{m}_t{t}" for t in (1, 10, 20) for m in ("psnr", "ssim")]
    scalars, acc = _scalars(tmp_path / "tb")
    epoch_ends = scalars["val/loss"]
    assert len(epoch_ends) == 2
    for key in keys:
        assert scalars.get(f"val/{key}") == epoch_ends, key  # every metric at each epoch's validation end
    assert len(acc.Histograms("val/predicted_class")) == 2
    assert {"metrics/generative/text_summary", "metrics/denoising/text_summary"} <= set(acc.Tags()["tensors"])
    # real features (test, and train for the floor): extracted once at set-up and cached; each epoch only the samples
    assert gen.quality.inception.calls == 2 + 2 and gen.quality.classifier.calls == 2 + 2
    cached = sorted(p.name for p in (tmp_path / "cache" / "features").glob("*.pt"))
    assert [n.split("_")[:3] for n in cached] == [
        ["test", "n4", "inception-v3-compat-64-tf1-bilinear"],
        ["test", "n4", f"{gen.quality.classifier.name}"],
        ["train", "n4", "inception-v3-compat-64-tf1-bilinear"],
        ["train", "n4", f"{gen.quality.classifier.name}"],
    ]
    assert len(list((tmp_path / "cache" / "floors").glob("fid_train-vs-test_n4_*.json"))) == 2
    settings = gen.quality.settings({"name": "ancestral", "steps": 20})
    assert (
        settings["fid"]["extractor"].startswith("inception-v3-compat-64-tf1-bilinear, 64-d")
        and settings["psnr/ssim"]["references"] == 20
    )
    assert settings["samples"]["n_generated"] == 4 and settings["real"] == {"split": "test", "n_real": 4}

    # a second run with the same settings reads the real features from disk: no pass over real data
    gen2 = SampleQuality(
        n=4, psnr_ssim=False, fid=False, kid=False, cache_dir=str(tmp_path / "cache"), data_root=str(data_dir)
    )
    gen2.prepare()
    assert gen2.classifier.calls == 0


def test_denoising_x0_hat_from_oracle_and_zero_networks(data_dir: Path) -> None:
    x0 = load_mnist(data_dir, "test")[0][:8]

    class Oracle(torch.nn.Module):  # predicts the true noise (eps) or the true x0
        def __init__(self, schedule, predict: str) -> None:
            super().__init__()
            self.schedule, self.predict = schedule, predict

        def forward(self, z, t):
            if self.predict == "x0":
                return x0
            ab = self.schedule.alpha_bars[t].view(-1, 1, 1, 1)
            return (z - ab.sqrt() * x0) / (1 - ab).sqrt()

    class X0Gaussian(Gaussian):
        prediction = "x0"

        def training_example(self, x0, t, schedule, generator=None):
            return super().training_example(x0, t, schedule, generator).z_t, x0

    module = build_module(_compose("T=50"))
    den = DenoisingQuality(n=8, timesteps=[5, 25, 45])
    module.network = Oracle(module.schedule, "eps")
    exact = den.compute(module, module.process, x0)
    assert set(exact) == {f"denoise_{m}_t{t}" for t in (5, 25, 45) for m in ("psnr", "ssim")}
    assert min(exact[f"denoise_psnr_t{t}"] for t in (5, 25, 45)) > 50 and exact["denoise_ssim_t45"] > 0.999
    module.degradation, module.network = X0Gaussian(), Oracle(module.schedule, "x0")
    assert den.compute(module, module.process, x0)["denoise_psnr_t45"] == math.inf  # x̂0 is the network output itself
    module.degradation, module.network = Gaussian(), ZeroNet()
    zero = den.compute(module, module.process, x0)  # x̂0 = z_t/√ᾱ_t: worse at larger t
    assert zero["denoise_psnr_t5"] > zero["denoise_psnr_t25"] > zero["denoise_psnr_t45"]
    assert den.compute(module, module.process, x0) == zero  # fixed noise per t
    with pytest.raises(DDPMError, match=r"timesteps must be integers in \[1, T=50\], got \[60\]"):
        DenoisingQuality(timesteps=[10, 60]).compute(module, module.process, x0)
    assert DenoisingQuality().resolve_timesteps(1000) == [100, 500, 900]


class ZeroNet(torch.nn.Module):
    def forward(self, z, t):
        return torch.zeros_like(z)


@pytest.mark.e2e
def test_missing_weights_stop_the_run_at_start_up(tmp_path: Path, data_dir: Path) -> None:
    module = build_module(_compose("T=20"))
    steps = []
    module.training_step = lambda batch, idx: steps.append(idx)  # type: ignore[method-assign]
    dm = MNISTDataModule(root=str(data_dir), batch_size=32, train_subset=64, val_subset=32, download=False)
    gen = GenerativeMetrics(n=4, inception_weights=str(tmp_path / "none.pth"))
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        callbacks=[gen],
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    with pytest.raises(DDPMError, match="Inception weights not found"):
        trainer.fit(module, dm)
    assert steps == []

    # through the CLI: one line, exit 2, nothing trained
    run = tmp_path / "run"
    proc = run_cli(
        "ddpm_lightning.train",
        *TINY,
        "callbacks=metrics",
        "callbacks.generative_metrics.inception_weights=/no/inception.pth",
        f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: Inception weights not found: /no/inception.pth (from callbacks.generative_metrics.inception_weights); "
        "point it at pt_inception-2015-12-05.pth"
    )
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").iterdir())


def test_metrics_config_composes_and_instantiates(tmp_path: Path) -> None:
    cfg = _compose("callbacks=metrics", f"paths.root_dir={tmp_path}", "hydra.run.dir=x")
    gm = cfg.callbacks.generative_metrics
    assert gm.n == 1000 and gm.fid and gm.kid and gm.fid_mnist and gm.psnr_ssim and "denoising_metrics" in cfg.callbacks
    cb = instantiate(gm, cache_dir=str(tmp_path / "c"))
    assert isinstance(cb, GenerativeMetrics) and cb.sampler is None
    ddim = instantiate(
        gm, sampler={"_target_": "ddpm_lightning.core.samplers.DDIM", "_partial_": True, "num_steps": 5}, cache_dir=None
    )
    module = build_module(_compose("T=20"))
    assert module.make_sampler(ddim.sampler).name == "ddim"
    default = _compose().callbacks.generative_metrics  # default training: cheap metrics only
    assert default.n == 100 and not default.fid and not default.kid and default.fid_mnist
