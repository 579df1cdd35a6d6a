"""Sample-quality metrics: extractors, FID/KID sanity, PSNR/SSIM, class coverage, the feature cache, weight errors."""

from __future__ import annotations

import math
import urllib.error
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

import ddpm_lightning.evaluation.metrics as metrics
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.evaluation.classifier import load_or_train_classifier
from ddpm_lightning.evaluation.data import load_mnist
from tests.helpers.run import FID_WEIGHTS


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
    assert (
        metrics.kernel_distance(classifier_features, fa, b, subsets=10, subset_size=200) == kid_real
    )  # seeded subsets


def test_inception_fid_kid_mnist_vs_noise(weights, mnist_test) -> None:
    inception = metrics.InceptionFeatures(weights)  # the standard 2048-d pool3 features
    feats = inception(torch.cat([mnist_test[:4], noise_images(4)]))  # (8, 2048), one batch: ~0.2 s per image on CPU
    real, noise = feats[:4], feats[4:]
    assert (
        feats.shape == (8, 2048) and inception.calls == 1 and inception.name == "inception-v3-compat-pool3-tf1-bilinear"
    )
    # the 2048-d FID itself: tests/evaluation/test_fid_parity.py (equal to torch-fidelity's); here KID and 64-d FID
    kid_self, _ = metrics.kernel_distance(inception, real, real, subsets=3, subset_size=4)
    kid_noise, std = metrics.kernel_distance(inception, real, noise, subsets=3, subset_size=4)
    assert kid_noise > 0.1 and kid_noise > 3 * abs(kid_self) and std == 0.0, (kid_self, kid_noise)  # 4 of 4: one subset
    small = metrics.InceptionFeatures(weights, dims=64)  # an earlier block: self ~ 0, noise far
    f64 = small(torch.cat([mnist_test[:4], noise_images(4)]))
    assert f64.shape == (8, 64) and small.name == "inception-v3-compat-64-tf1-bilinear"
    assert (
        abs(metrics.frechet_distance(small, f64[:4], f64[:4]))
        < 1e-3
        < metrics.frechet_distance(small, f64[:4], f64[4:])
    )
    with pytest.raises(DDPMError, match=r"inception_dims must be one of \[64, 192, 768, 2048\], got 100"):
        metrics.InceptionFeatures(weights, dims=100)
    u8 = metrics.to_uint8_rgb(mnist_test[:2])  # what the network gets: uint8, 3 equal channels, exact pixels
    assert u8.dtype == torch.uint8 and u8.shape == (2, 3, 28, 28) and torch.equal(u8[:, 0], u8[:, 2])


def test_psnr_ssim_against_equals_pairwise_mean(mnist_test) -> None:
    gen, refs = noise_images(3) * 0.5 + mnist_test[100:103] * 0.5, mnist_test[:4]
    psnr, ssim = metrics.psnr_ssim_against(gen, refs, chunk=2)
    pairs = [(g, r) for g in metrics.to_unit(gen) for r in metrics.to_unit(refs)]
    exp_psnr = sum(float(peak_signal_noise_ratio(g[None], r[None], data_range=1.0)) for g, r in pairs) / len(pairs)
    exp_ssim = sum(
        float(structural_similarity_index_measure(g[None], r[None], data_range=1.0)) for g, r in pairs
    ) / len(pairs)
    assert psnr == pytest.approx(exp_psnr, rel=1e-5) and ssim == pytest.approx(exp_ssim, rel=1e-4, abs=1e-6)
    # PSNR = 20·log10(MAX/√MSE) with MAX = 1 on [0, 1] pixels
    g, r = metrics.to_unit(gen[:1]), metrics.to_unit(refs[:1])
    assert metrics.psnr_ssim_against(gen[:1], refs[:1])[0] == pytest.approx(
        20 * math.log10(1 / float(((g - r) ** 2).mean()) ** 0.5), rel=1e-5
    )


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
