"""GPU tier, training: every model, degradation, metric sampler, callback set and speed option on the device,
a 2-job parallel multirun sharing it, ``trainer=ddp trainer.devices=1`` and ``report`` on the results.

Several options go into one Hydra multirun (one process, jobs one after another), so the tier pays the
interpreter and CUDA start-up once per command, not once per option.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers.gpu import TINY, check_run, train
from tests.helpers.run import run_cli


def multirun(sweep: Path, *overrides: str, timeout: float = 280) -> list[Path]:
    """A tiny multirun on the device into ``sweep``; returns its job dirs, each checked like a CPU run."""
    proc = run_cli("ddpm_lightning.train", "-m", *TINY, f"hydra.sweep.dir={sweep}", *overrides, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    for job in jobs:
        check_run(job)
    return jobs


def test_models_and_degradations(tmp_path: Path) -> None:
    """model=cnn|unet × degradation=gaussian|des|des_image|blur (blur samples with cold)."""
    jobs = multirun(tmp_path / "sweep", "model=cnn,unet", "degradation=gaussian,des,des_image,blur")
    assert len(jobs) == 8
    chosen = [OmegaConf.load(j / ".hydra" / "config.yaml").sampler._target_ for j in jobs]
    assert sum(t.endswith("ColdSampler") for t in chosen) == 2  # the blur jobs


@pytest.mark.parametrize(
    "overrides",
    [
        ("sampler=ddim", "sampler.num_steps=5", "sampler.spacing=linear,quadratic,logsnr"),
        ("sampler=dpm_solver", "sampler.num_steps=5", "sampler.spacing=linear,quadratic,logsnr", "sampler.order=1,2"),
    ],
    ids=["ddim", "dpm_solver"],
)
def test_each_sampler_as_the_metric_sampler(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    """The module's sampler is the metric callback's and the grid's (the dpm_solver CUDA crash of issue 12).
    Ancestral (the default) and cold (blur) are the metric samplers of test_models_and_degradations."""
    jobs = multirun(tmp_path / "sweep", *overrides)
    assert len(jobs) == {"ddim": 3, "dpm_solver": 6}[overrides[0].split("=")[1]]


def test_callbacks_ema_and_metrics(tmp_path: Path) -> None:
    """callbacks=[ema,metrics]: the EMA's weights and the study's metrics (Inception FID/KID; tiny N), one run."""
    g = "callbacks.generative_metrics"
    run = train(tmp_path / "run", "callbacks=[ema,metrics]", f"{g}.n=8", f"{g}.kid_subsets=5", f"{g}.kid_subset_size=4")
    values = check_run(run)
    assert {"val/fid", "val/kid", "val/fid_mnist"} <= set(values)
    assert "averaging_state" in torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_precision_and_data_placement(tmp_path: Path) -> None:
    jobs = multirun(tmp_path / "sweep", "trainer.precision=32-true,bf16-mixed", "data.on_device=true,false")
    assert len(jobs) == 4


def test_compile_and_channels_last(tmp_path: Path) -> None:
    check_run(train(tmp_path / "run", "module.compile=true", "module.channels_last=true", timeout=280))


def test_parallel_multirun_shares_the_device(tmp_path: Path) -> None:
    jobs = multirun(tmp_path / "sweep", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "schedule=linear,cosine")
    assert len(jobs) == 2
    proc = run_cli("ddpm_lightning.report", str(tmp_path / "sweep"), "--early-epoch", "0", "--late-epoch", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "sweep" / "report.md").is_file() and (tmp_path / "sweep" / "fig_samples.png").is_file()
    assert "FAILED" not in (tmp_path / "sweep" / "report.md").read_text()


def test_ddp_on_one_device(tmp_path: Path) -> None:
    """trainer=ddp trainer.devices=1 (NCCL on CUDA): the metric callbacks gather through the strategy."""
    values = check_run(train(tmp_path / "run", "trainer=ddp", "trainer.devices=1"))
    assert "val/fid_mnist" in values
