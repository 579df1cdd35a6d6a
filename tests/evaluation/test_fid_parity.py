"""FID/KID against the reference implementation (torch-fidelity) on the same images, real weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch_fidelity
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

import ddpm_lightning.evaluation.metrics as metrics
from ddpm_lightning.evaluation.data import load_mnist
from tests.helpers.run import FID_WEIGHTS


class _Uint8(torch.utils.data.Dataset):
    """Images as torch-fidelity reads them: (3, H, W) uint8."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = metrics.to_uint8_rgb(images)  # (N, 3, 28, 28)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


@pytest.mark.slow  # Inception on CPU: minutes (make test-fast leaves it out)
@pytest.mark.timeout(600)
def test_fid_kid_equal_torch_fidelity(data_dir: Path) -> None:
    if not FID_WEIGHTS.is_file():
        pytest.fail(f"Inception weights not found at {FID_WEIGHTS} (set DDPM_FID_WEIGHTS)")
    images = load_mnist(data_dir, "test")[0]
    real, fake = images[:4], images[4:8]  # (4, 1, 28, 28) each: ~0.3 s per image and net on CPU
    # the reference: torch-fidelity's extractor, then its FID from those features as calculate_metrics computes it
    # (float32 features, numpy statistics; one Inception pass over the images instead of two)
    tf_net = torch_fidelity.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(FID_WEIGHTS)
    )
    with torch.no_grad():
        tf_r, tf_f = (tf_net(metrics.to_uint8_rgb(x))[0] for x in (real, fake))  # (4, 2048) float32
    ref = fid_statistics_to_metric(fid_features_to_statistics(tf_f), fid_features_to_statistics(tf_r), verbose=False)
    inception = metrics.InceptionFeatures(FID_WEIGHTS)  # default: TF1-compatible resize
    assert inception.name == "inception-v3-compat-pool3-tf1-bilinear"
    r, f = inception(real), inception(fake)  # (4, 2048)
    fid = metrics.frechet_distance(inception, r, f)
    kid, _ = metrics.kernel_distance(inception, r, f, subsets=1, subset_size=4)
    assert fid == pytest.approx(ref[KEY_METRIC_FID], rel=1e-6)
    # torch-fidelity's KID runs its kernels in float32 (9e-5 relative off at this tiny N), ours in float64:
    # compare with its KID formula on its own features, in float64
    tf_r, tf_f = tf_r.double(), tf_f.double()
    assert torch.allclose(tf_r, r.double(), rtol=1e-5, atol=1e-6)
    ref_kid = kid_features_to_metric(tf_f, tf_r, kid_subsets=1, kid_subset_size=4, verbose=False)
    assert kid == pytest.approx(ref_kid["kernel_inception_distance_mean"], rel=1e-6)
    # the antialiased resize (torchmetrics' own default) is an explicit option, with its own name and other
    # features (on 2 of the images: Inception on CPU is the cost of this test)
    aa = metrics.InceptionFeatures(FID_WEIGHTS, antialias=True)
    assert aa.name == "inception-v3-compat-pool3-bilinear-antialias"
    assert not torch.allclose(aa(real[:2]).double(), r[:2].double(), rtol=1e-3, atol=1e-3)
