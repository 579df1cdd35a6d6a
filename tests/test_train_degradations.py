"""End to end: ``python -m ddpm_lightning.train degradation=<des|des_image|blur>`` trains, checkpoints,
logs and samples on tiny settings; the checkpoint records what sampling needs (DES scale, blur prior)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddpm_lightning.build import build_module, load_module
from ddpm_lightning.core.cold import Blur, ColdSampler
from ddpm_lightning.core.degradations import EntropyScaled
from ddpm_lightning.core.errors import DDPMError
from tests.helpers.config import compose_train, only_core_callbacks
from tests.helpers.run import TINY, run_cli

DEGRADATIONS = ["des", "des_image", "blur"]
SMALL_NET = "capacity.channels=[8,8]"  # the tiny runs test the plumbing, not the network
_RUNS: dict[str, Path] = {}


def _train(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run ``python -m ddpm_lightning.train degradation=<name>`` once per session; its run directory."""
    if name not in _RUNS:
        out = tmp_path_factory.mktemp(name) / "run"
        args = [f"degradation={name}", *TINY, SMALL_NET, *only_core_callbacks(), f"hydra.run.dir={out}"]
        proc = run_cli("ddpm_lightning.train", *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        _RUNS[name] = out
    return _RUNS[name]


@pytest.fixture(params=DEGRADATIONS)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[str, Path]:
    return request.param, _train(request.param, tmp_path_factory)


def _scalars(run_dir: Path) -> dict[str, list[float]]:
    events = sorted(run_dir.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard events under {run_dir}"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.e2e
def test_trains_checkpoints_and_logs(run: tuple[str, Path]) -> None:
    name, out = run
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "samples" / "epoch_000.png").is_file()
    assert not (out / "FAILED").exists()
    metrics = yaml.safe_load((out / "metrics.yaml").read_text())
    assert all(v == v for v in metrics.values())  # no NaN
    if name.startswith("des"):
        scalars = _scalars(out)
        assert {"train/entropy", "train/scale"} <= set(scalars)  # H and s in TensorBoard
        h, s = scalars["train/entropy"][-1], scalars["train/scale"][-1]
        assert 0.5 < h < 4.0  # MNIST: mostly background, ≈ 1.5–2 bits
        assert s == pytest.approx(torch.sigmoid(torch.tensor(h)).item(), abs=0.02)  # mean sigmoid ≈ sigmoid(mean)
        assert 0.0 < s < 1.0


@pytest.mark.e2e
def test_checkpoint_records_the_sampling_choice_and_samples(run: tuple[str, Path]) -> None:
    name, out = run
    module, cfg = load_module(out / "checkpoints" / "last.ckpt")
    deg = module.degradation
    if name.startswith("des"):
        assert isinstance(deg, EntropyScaled) and deg.per_image == (name == "des_image")
        metrics = yaml.safe_load((out / "metrics.yaml").read_text())
        assert deg.num_batches.item() == 2  # two training batches of equal size
        assert deg.noise_scale == pytest.approx(metrics["train/scale"], abs=1e-5)  # the mean s, stored
        a = module.generate(4, seed=0)
        deg.running_scale.fill_(0.5)
        b = module.generate(4, seed=0)
        assert not torch.allclose(a, b)  # the sampler uses the recorded scale
    else:
        assert isinstance(deg, Blur) and cfg.sampler._target_.endswith("ColdSampler")
        assert isinstance(module.make_sampler(), ColdSampler)
        assert deg.prior_count.item() == 64  # 2 batches × 32 images, one channel
        assert -1.0 < deg.prior_mean.item() < -0.5  # MNIST images are mostly black
        a = module.generate(4, seed=0)
        assert torch.equal(a, module.generate(4, seed=0))
        assert a.std(dim=(1, 2, 3)).min().item() > 0  # not constant images
    assert a.shape == (4, 1, 28, 28) and torch.isfinite(a).all()


@pytest.mark.e2e
def test_sample_entry_point(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, tmp_path: Path) -> None:
    """``python -m ddpm_lightning.sample`` on the blur checkpoint: its prior and Algorithm 2 via the entry point."""
    out = _train("blur", tmp_path_factory)
    ckpt = out / "checkpoints" / "last.ckpt"
    grid = tmp_path / "grid.png"
    proc = run_cli("ddpm_lightning.sample", f"ckpt_path={ckpt}", "n=16", f"output={grid}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert grid.is_file()


def _compose(*overrides: str):
    return compose_train("T=20", *overrides)


@pytest.mark.parametrize(
    "overrides, sampler",
    [
        ((), "Ancestral"),
        (("degradation=des",), "Ancestral"),
        (("degradation=blur",), "ColdSampler"),
        (("degradation=des_image", "sampler=ddim", "sampler.num_steps=10"), "DDIM"),
        (("degradation=des", "sampler=dpm_solver", "sampler.num_steps=10"), "DPMSolver"),
        (("degradation=blur", "sampler.num_steps=5"), "ColdSampler"),
    ],
)
def test_degradation_picks_its_sampler(overrides: tuple[str, ...], sampler: str) -> None:
    cfg = _compose(*overrides)
    assert cfg.sampler._target_.rsplit(".", 1)[1] == sampler
    build_module(cfg)  # the sampler matches the degradation's prediction


def test_mismatched_sampler_is_one_clear_error() -> None:
    cfg = _compose("degradation=blur", "sampler=ancestral")
    with pytest.raises(DDPMError, match="'ancestral' needs a degradation predicting 'eps'.*'Blur' predicts 'x0'"):
        build_module(cfg)
