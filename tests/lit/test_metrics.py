"""Sample-quality metrics: extractors, FID/KID sanity, the feature cache, weight errors, the callbacks in a run."""

from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

import ddpm_lightning.lit.metrics as metrics
from ddpm_lightning.classifier import load_or_train_classifier
from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.checkpoint import build_module
from ddpm_lightning.lit.data import MNISTDataModule, load_mnist
from ddpm_lightning.lit.metric_callbacks import DenoisingMetrics, GenerativeMetrics
from tests.helpers.config import compose_train
from tests.helpers.run import FID_WEIGHTS, TINY, run_cli


def _compose(*overrides: str):
    return compose_train(*overrides)


@pytest.fixture(scope="module")
def mnist_test(data_dir: Path) -> torch.Tensor:
    return load_mnist(data_dir, "test")[0]  # (10000, 1, 28, 28) in [−1, 1]


@pytest.fixture(scope="module")
def classifier_features() -> metrics.ClassifierFeatures:
    model, meta = load_or_train_classifier(None)  # the packaged weights
    return metrics.ClassifierFeatures(model, meta["sha256"])


@pytest.fixture(scope="module")
def weights() -> Path:
    if not FID_WEIGHTS.is_file():
        pytest.fail(f"Inception weights not found at {FID_WEIGHTS} (set DDPM_FID_WEIGHTS)")
    return FID_WEIGHTS


def noise_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_classifier_fid_kid_self_real_noise(classifier_features, mnist_test) -> None:
    a, b, noise = mnist_test[:500], mnist_test[500:1000], noise_images(500)
    fa = classifier_features(a)
    assert fa.shape == (500, 64) and classifier_features(fa) is fa  # extracted features pass through
    same = metrics.frechet_distance(classifier_features, a, a)
    real = metrics.frechet_distance(classifier_features, a, b)
    fake = metrics.frechet_distance(classifier_features, a, noise)
    assert abs(same) < 1e-3 and fake > 20 * real > 0, (same, real, fake)
    kid_real = metrics.kernel_distance(classifier_features, fa, b, subsets=10, subset_size=200)
    kid_fake = metrics.kernel_distance(classifier_features, fa, noise, subsets=10, subset_size=200)
    assert kid_fake[0] > 20 * abs(kid_real[0])
    assert metrics.kernel_distance(classifier_features, fa, b, subsets=10, subset_size=200) == kid_real  # seeded subsets


@pytest.mark.slow  # Inception on CPU: ~1 min (make test-fast leaves it out)
def test_inception_fid_kid_mnist_vs_noise(weights, mnist_test) -> None:
    inception = metrics.InceptionFeatures(weights)  # the standard 2048-d pool3 features
    feats = inception(torch.cat([mnist_test[:4], noise_images(4)]))  # (8, 2048), one batch: ~0.2 s per image on CPU
    real, noise = feats[:4], feats[4:]
    assert feats.shape == (8, 2048) and inception.calls == 1 and inception.name == "inception-v3-compat-pool3-tf1-bilinear"
    assert metrics.frechet_distance(inception, real, noise) > 100  # one 2048-d FID: ~10 s of eigvals on CPU
    kid_self, _ = metrics.kernel_distance(inception, real, real, subsets=3, subset_size=4)
    kid_noise, std = metrics.kernel_distance(inception, real, noise, subsets=3, subset_size=4)
    assert kid_noise > 0.1 and kid_noise > 3 * abs(kid_self) and std == 0.0, (kid_self, kid_noise)  # 4 of 4: one subset
    small = metrics.InceptionFeatures(weights, dims=64)  # an earlier block: self ~ 0, noise far
    f64 = small(torch.cat([mnist_test[:4], noise_images(4)]))
    assert f64.shape == (8, 64) and small.name == "inception-v3-compat-64-tf1-bilinear"
    assert abs(metrics.frechet_distance(small, f64[:4], f64[:4])) < 1e-3 < metrics.frechet_distance(small, f64[:4], f64[4:])
    with pytest.raises(DDPMError, match=r"inception_dims must be one of \[64, 192, 768, 2048\], got 100"):
        metrics.InceptionFeatures(weights, dims=100)
    u8 = metrics.to_uint8_rgb(mnist_test[:2])  # what the network gets: uint8, 3 equal channels, exact pixels
    assert u8.dtype == torch.uint8 and u8.shape == (2, 3, 28, 28) and torch.equal(u8[:, 0], u8[:, 2])


def test_psnr_ssim_against_equals_pairwise_mean(mnist_test) -> None:
    gen, refs = noise_images(3) * 0.5 + mnist_test[100:103] * 0.5, mnist_test[:4]
    psnr, ssim = metrics.psnr_ssim_against(gen, refs, chunk=2)
    pairs = [(g, r) for g in metrics.to_unit(gen) for r in metrics.to_unit(refs)]
    exp_psnr = sum(float(peak_signal_noise_ratio(g[None], r[None], data_range=1.0)) for g, r in pairs) / len(pairs)
    exp_ssim = sum(float(structural_similarity_index_measure(g[None], r[None], data_range=1.0)) for g, r in pairs) / len(pairs)
    assert psnr == pytest.approx(exp_psnr, rel=1e-5) and ssim == pytest.approx(exp_ssim, rel=1e-4, abs=1e-6)
    # PSNR = 20·log10(MAX/√MSE) with MAX = 1 on [0, 1] pixels
    g, r = metrics.to_unit(gen[:1]), metrics.to_unit(refs[:1])
    assert metrics.psnr_ssim_against(gen[:1], refs[:1])[0] == pytest.approx(20 * math.log10(1 / float(((g - r) ** 2).mean()) ** 0.5), rel=1e-5)


def test_class_coverage() -> None:
    uniform = metrics.class_coverage(torch.arange(100) % 10)
    assert uniform["class_entropy"] == pytest.approx(math.log2(10)) and uniform["modes_covered"] == 10
    one = metrics.class_coverage(torch.full((50,), 3))
    assert one["class_entropy"] == pytest.approx(0.0, abs=1e-9) and one["modes_covered"] == 1
    mostly = metrics.class_coverage(torch.cat([torch.zeros(991), torch.arange(9) + 1]))  # 1 sample each: below 10 %
    assert mostly["modes_covered"] == 1 and mostly["class_counts"][0] == 991


def test_cached_features_computed_once(tmp_path: Path, classifier_features, mnist_test) -> None:
    real = mnist_test[:50]
    before = classifier_features.calls
    first = metrics.cached_features(classifier_features, real, tmp_path, "test")
    files = list((tmp_path / "features").glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith(f"test_n50_{classifier_features.name}_")
    mtime, calls = files[0].stat().st_mtime_ns, classifier_features.calls
    assert calls > before
    again = metrics.cached_features(classifier_features, real, tmp_path, "test")
    assert torch.equal(first, again) and classifier_features.calls == calls and files[0].stat().st_mtime_ns == mtime
    metrics.cached_features(classifier_features, mnist_test[:40], tmp_path, "test")  # another N: another file
    assert len(list((tmp_path / "features").glob("*.pt"))) == 2
    files[0].write_bytes(b"garbage")  # unreadable: recomputed, not trusted
    assert torch.equal(metrics.cached_features(classifier_features, real, tmp_path, "test"), first)


def test_inception_weights_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DDPMError, match=r"Inception weights not found: /no/such.pth \(from inception_weights\)"):
        metrics.InceptionFeatures("/no/such.pth")
    monkeypatch.setenv("DDPM_FID_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(DDPMError, match="gone.pth \\(from DDPM_FID_WEIGHTS\\)"):
        metrics.InceptionFeatures(None)
    (tmp_path / "bad.pth").write_bytes(b"xx")
    with pytest.raises(DDPMError, match="cannot read Inception weights .*bad.pth"):
        metrics.InceptionFeatures(str(tmp_path / "bad.pth"))
    # no file and no network: torch-fidelity's download fails -> one line saying what to do
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.delenv("DDPM_FID_WEIGHTS")
    monkeypatch.setattr(tfi, "load_state_dict_from_url", offline)
    with pytest.raises(DDPMError) as err:
        metrics.InceptionFeatures(None, how_to_disable="x.fid=false x.kid=false")
    msg = str(err.value)
    assert "\n" not in msg and "downloading them failed (URLError" in msg
    assert "DDPM_FID_WEIGHTS=/path/to/pt_inception-2015-12-05.pth" in msg and "x.fid=false x.kid=false" in msg


def _scalars(logdir: Path) -> tuple[dict[str, list[int]], EventAccumulator]:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


@pytest.mark.e2e
def test_tiny_run_logs_every_metric_each_epoch(tmp_path: Path, data_dir: Path, weights: Path) -> None:
    module = build_module(_compose("T=20"), {})
    dm = MNISTDataModule(root=str(data_dir), batch_size=32, train_subset=64, val_subset=32, download=False)
    gen = GenerativeMetrics(n=4, kid_subsets=3, psnr_references=20, inception_weights=str(weights), inception_dims=64,
                            cache_dir=str(tmp_path / "cache"), bootstrap=5)
    den = DenoisingMetrics(n=8, timesteps=[1, 10, 20])
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=1, accelerator="cpu", logger=TensorBoardLogger(tmp_path, name="tb", version=""),
                         callbacks=[gen, den], enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
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
    assert gen.inception.calls == 2 + 2 and gen.classifier.calls == 2 + 2
    cached = sorted(p.name for p in (tmp_path / "cache" / "features").glob("*.pt"))
    assert [n.split("_")[:3] for n in cached] == [
        ["test", "n4", "inception-v3-compat-64-tf1-bilinear"], ["test", "n4", f"{gen.classifier.name}"],
        ["train", "n4", "inception-v3-compat-64-tf1-bilinear"], ["train", "n4", f"{gen.classifier.name}"]]
    assert len(list((tmp_path / "cache" / "floors").glob("fid_train-vs-test_n4_*.json"))) == 2
    settings = gen.settings({"name": "ancestral", "steps": 20})
    assert settings["fid"]["extractor"].startswith("inception-v3-compat-64-tf1-bilinear, 64-d") and settings["psnr/ssim"]["references"] == 20
    assert settings["samples"]["n_generated"] == 4 and settings["real"] == {"split": "test", "n_real": 4}

    # a second run with the same settings reads the real features from disk: no pass over real data
    gen2 = GenerativeMetrics(n=4, psnr_ssim=False, fid=False, kid=False, cache_dir=str(tmp_path / "cache"))
    gen2.prepare(gen2.real_images(trainer))
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
            return super().training_example(x0, t, schedule, generator)[0], x0

    module = build_module(_compose("T=50"), {})
    den = DenoisingMetrics(n=8, timesteps=[5, 25, 45])
    module.network = Oracle(module.schedule, "eps")
    exact = den.compute(module, x0)
    assert set(exact) == {f"denoise_{m}_t{t}" for t in (5, 25, 45) for m in ("psnr", "ssim")}
    assert min(exact[f"denoise_psnr_t{t}"] for t in (5, 25, 45)) > 50 and exact["denoise_ssim_t45"] > 0.999
    module.degradation, module.network = X0Gaussian(), Oracle(module.schedule, "x0")
    assert den.compute(module, x0)["denoise_psnr_t45"] == math.inf  # x̂0 is the network output itself
    module.degradation, module.network = Gaussian(), ZeroNet()
    zero = den.compute(module, x0)  # x̂0 = z_t/√ᾱ_t: worse at larger t
    assert zero["denoise_psnr_t5"] > zero["denoise_psnr_t25"] > zero["denoise_psnr_t45"]
    assert den.compute(module, x0) == zero  # fixed noise per t
    with pytest.raises(DDPMError, match=r"timesteps must be integers in \[1, T=50\], got \[60\]"):
        DenoisingMetrics(timesteps=[10, 60]).compute(module, x0)
    assert DenoisingMetrics().resolve_timesteps(1000) == [100, 500, 900]


class ZeroNet(torch.nn.Module):
    def forward(self, z, t):
        return torch.zeros_like(z)


@pytest.mark.e2e
def test_missing_weights_stop_the_run_at_start_up(tmp_path: Path, data_dir: Path) -> None:
    module = build_module(_compose("T=20"), {})
    steps = []
    module.training_step = lambda batch, idx: steps.append(idx)  # type: ignore[method-assign]
    dm = MNISTDataModule(root=str(data_dir), batch_size=32, train_subset=64, val_subset=32, download=False)
    gen = GenerativeMetrics(n=4, inception_weights=str(tmp_path / "none.pth"))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, callbacks=[gen], enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(DDPMError, match="Inception weights not found"):
        trainer.fit(module, dm)
    assert steps == []

    # through the CLI: one line, exit 2, nothing trained
    run = tmp_path / "run"
    proc = run_cli("ddpm_lightning.train", *TINY, "callbacks=metrics", "callbacks.generative_metrics.inception_weights=/no/inception.pth",
                   f"hydra.run.dir={run}", f"paths.cache_dir={tmp_path / 'cache'}")
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
    ddim = instantiate(gm, sampler={"_target_": "ddpm_lightning.core.samplers.DDIM", "_partial_": True, "num_steps": 5}, cache_dir=None)
    module = build_module(_compose("T=20"), {})
    assert module.make_sampler(ddim.sampler).name == "ddim"
    default = _compose().callbacks.generative_metrics  # default training: cheap metrics only
    assert default.n == 100 and not default.fid and not default.kid and default.fid_mnist
