"""Lightning DDP on CPU (gloo, 2 processes) through the real entry point, and torchmetrics under DDP.

1. ``python -m ddpm_lightning.train trainer=ddp trainer.accelerator=cpu trainer.devices=2``: Lightning
   re-launches the module for rank 1 with the same argv plus ``hydra.run.dir=<rank 0's dir>``; both
   ranks train, logged metrics are reduced across ranks, and checkpoints, TensorBoard events, sample
   grids and .hydra/ are written once. With the default callbacks and with callbacks=[ema,metrics] (EMA
   weights and Inception FID/KID): every rank samples its share of the metric samples, and the values equal
   one process's on them.
2. A torchmetrics metric updated by 2 gloo processes with half of a fixed sample set each equals the
   value one process computes over all of it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf
from torch import Tensor, nn
from torchmetrics.image import FrechetInceptionDistance, PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from tests.helpers.run import DATA_DIR, popen


def _final_metrics(log: Path) -> dict[str, float]:
    """The ``final metrics:`` table train.py logs at the end of a run (8 significant digits)."""
    match = re.search(r"final metrics:\n((?:  \S+ +\S+\n)+)", log.read_text())
    assert match, f"no final metrics in {log}"
    return {k: float(v.replace(",", "")) for k, v in (ln.split() for ln in match.group(1).splitlines())}


def run_ddp(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``python -m ddpm_lightning.train`` in a session of its own: a hang (one rank waiting forever in a
    collective) fails the test after ``timeout`` s, and kills rank 1 too (Lightning starts it as a child).
    Rank 0 through the tests' zygote (tests/helpers/run.py); rank 1 is a fresh interpreter, started by Lightning
    as for a user."""
    env = {"DDPM_CACHE_DIR": str(cwd / "cache"), "PYTHONWARNINGS": "ignore"}
    proc = popen(
        "ddpm_lightning.train",
        *args,
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"2-process DDP run hung for {timeout} s (a rank alone in a collective?):\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


GEN = "callbacks.generative_metrics"
CALLBACKS = {
    "default": [f"{GEN}.n=7"],  # 7 over 2 ranks: blocks of 4 and 3
    "ema+metrics": [  # one run for both: the EMA swap and Inception's gathers under DDP
        "callbacks=[ema,metrics]",
        f"{GEN}.n=8",
        f"{GEN}.inception_dims=64",
        f"{GEN}.kid_subsets=5",
        f"{GEN}.kid_subset_size=4",
    ],
}


@pytest.mark.e2e
@pytest.mark.parametrize("callbacks", sorted(CALLBACKS))
def test_ddp_two_cpu_processes_through_the_entry_point(tmp_path: Path, callbacks: str) -> None:
    """Every rank takes part in the metric callbacks and the grid: the run finishes (before this, rank 0 sat
    alone in torchmetrics' all_gather while rank 1 waited in Lightning's all_reduce, forever)."""
    from tests.helpers.run import TINY_SWEEP as TINY  # here: spawned workers import this file

    # The default run dir (outputs/train/runs/<date>/<time with µs>) is resolved once, by rank 0: rank 1
    # gets it as hydra.run.dir, else it would make a directory of its own.
    proc = run_ddp(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        *TINY,
        *CALLBACKS[callbacks],
        f"{GEN}.psnr_references=8",
        "callbacks.denoising_metrics.n=8",
        cwd=tmp_path,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in out and "distributed_backend=gloo" in out
    runs = list((tmp_path / "outputs" / "train" / "runs").glob("*/*"))
    assert len(runs) == 1, runs
    run = runs[0]

    # rank 1 ran in the same run dir (its own log file, no .hydra/ of its own)
    log0, log1 = (run / "train.log").read_text(), (run / "train_ddp_process_1.log").read_text()
    rank0, rank1 = _final_metrics(run / "train.log"), _final_metrics(run / "train_ddp_process_1.log")
    assert OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.job.name == "train"  # rank 0's, written once
    n = 7 if callbacks == "default" else 8
    # the split: each rank samples its block with its own seed (metrics, then the grid of 4)
    assert f"rank 0 of 2 samples {(n + 1) // 2} of {n} images, seed 1234" in log0
    assert f"rank 1 of 2 samples {n // 2} of {n} images, seed 1235" in log1
    assert (
        "rank 0 of 2 samples 2 of 4 images, seed 1234" in log0
        and "rank 1 of 2 samples 2 of 4 images, seed 1235" in log1
    )
    # every rank ends with the same values: the epoch means and every metric of the final table
    full = OmegaConf.to_container(OmegaConf.load(run / "metrics.yaml"))  # rank 0's values, all of them
    expected = {"val/psnr", "val/ssim", "val/fid_mnist", "val/denoise_psnr_t1", "val/denoise_ssim_t9"}  # T = 10
    expected |= {"val/fid", "val/kid"} if "metrics" in callbacks else set()
    assert expected <= set(full), sorted(full)
    shown = [k for k in rank0 if k.startswith(("val/", "train/"))]
    assert {"val/loss", "train/loss_epoch", "val/fid_mnist"} <= set(shown), shown
    for key in shown:
        assert rank0[key] == pytest.approx(rank1[key], rel=1e-6), key
        assert full[key] == pytest.approx(rank0[key], rel=1e-6), key

    # the values (logged with sync_dist: the mean over ranks) equal one process's on the same samples
    # (the two blocks from the final weights): ranks that computed different values would move the mean
    _compare_with_one_process(run, full, n, callbacks)

    # written once: one events file, one set of checkpoints and grids, nothing stray next to the run
    assert len(list((run / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_001.ckpt", "last.ckpt"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    assert {p.name for p in tmp_path.iterdir()} <= {"cache", "outputs"}  # cache: DDPM_CACHE_DIR


def _compare_with_one_process(run: Path, logged: dict[str, float], n: int, callbacks: str) -> None:
    from ddpm_lightning.build import load_module
    from ddpm_lightning.evaluation import SampleQuality
    from ddpm_lightning.lit.callbacks import share

    module, cfg = load_module(run / "checkpoints" / "last.ckpt")  # the weights of the last validation
    blocks = [share(n, 1234, r, 2) for r in range(2)]
    images = torch.cat([module.generate(count, seed=seed) for count, seed in blocks])  # (n, 1, 28, 28)
    g = cfg.callbacks.generative_metrics
    keys = ("fid", "kid", "fid_mnist", "inception_dims", "kid_subsets", "kid_subset_size")
    gen = SampleQuality(n=n, psnr_references=8, data_root=str(DATA_DIR), **{k: g[k] for k in keys if k in g})
    gen.prepare(device="cpu")
    single = gen.compute(images)
    assert single, callbacks
    for key, value in single.items():
        assert logged[f"val/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key


# ---- torchmetrics under DDP ----------------------------------------------------------------------
class TinyFeatures(nn.Module):
    """A fixed random conv feature extractor for FID: uint8 (B, 1, 28, 28) -> (B, 8)."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.float() / 255.0)


def _samples() -> tuple[Tensor, Tensor]:
    """A fixed set of 40 'real' and 40 'generated' images in [0, 1], (40, 1, 28, 28) each."""
    g = torch.Generator().manual_seed(0)
    real = torch.rand(40, 1, 28, 28, generator=g)
    fake = (real + 0.3 * torch.randn(40, 1, 28, 28, generator=g)).clamp(0, 1)
    return real, fake


def _metric_values(real: Tensor, fake: Tensor) -> dict[str, float]:
    psnr, ssim = PeakSignalNoiseRatio(data_range=1.0), StructuralSimilarityIndexMeasure(data_range=1.0)
    fid = FrechetInceptionDistance(feature=TinyFeatures())
    psnr.update(fake, real)
    ssim.update(fake, real)
    fid.update((real * 255).to(torch.uint8), real=True)
    fid.update((fake * 255).to(torch.uint8), real=False)
    return {"psnr": psnr.compute().item(), "ssim": ssim.compute().item(), "fid": fid.compute().item()}


def _ddp_worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        real, fake = _samples()
        part = slice(rank * 20, (rank + 1) * 20)  # each rank its half
        values = _metric_values(real[part], fake[part])  # compute() all-reduces the states
        if rank == 0:
            torch.save(values, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned gloo processes (make test-fast leaves it out)
def test_torchmetrics_under_ddp_equal_single_process(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    # forked, not spawned: the ranks start with this process's imports (a spawned one pays torch, torchmetrics
    # and this file's imports again, ~10 s of CPU each); nothing here has started threads that fork would lose
    ctx = mp.start_processes(
        _ddp_worker, args=(2, str(tmp_path / "pg_init"), str(out)), nprocs=2, join=False, start_method="fork"
    )
    deadline = time.monotonic() + 300  # a rank alone in a collective would wait forever: fail instead
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("2 gloo processes did not finish in 300 s (a rank alone in a collective?)")
    under_ddp = torch.load(out)

    real, fake = _samples()
    single = _metric_values(real, fake)
    half = _metric_values(real[:20], fake[:20])
    for key in ("psnr", "ssim", "fid"):
        assert under_ddp[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
        assert half[key] != pytest.approx(single[key], rel=1e-3), f"{key}: the halves alone give the same value"


@pytest.mark.parametrize(
    ("strategy", "mode", "refused"),
    [
        ("ddp", "MULTIRUN", True),
        ("ddp_spawn", "MULTIRUN", False),
        ("ddp", "RUN", False),
    ],
)
def test_ddp_in_a_multirun_is_refused_with_one_line(strategy: str, mode: str, refused: bool) -> None:
    """Lightning's ``ddp`` re-runs the command for rank 1: inside a multirun, the whole sweep (observed:
    jobs run twice, stray rank processes). train.py refuses it there and names what works."""
    import lightning.pytorch as pl
    from hydra.core.hydra_config import HydraConfig

    from ddpm_lightning.core.errors import DDPMError
    from ddpm_lightning.train import check_ddp_launch
    from tests.helpers.config import compose_train

    cfg = compose_train(f"hydra.mode={mode}", return_hydra_config=True)
    trainer = pl.Trainer(strategy=strategy, accelerator="cpu", devices=2, logger=False, enable_progress_bar=False)
    HydraConfig.instance().set_config(cfg)
    try:
        if refused:
            with pytest.raises(DDPMError, match="in a multirun use trainer.strategy=ddp_spawn or hydra/launcher=slurm"):
                check_ddp_launch(trainer)
        else:
            check_ddp_launch(trainer)
    finally:
        HydraConfig.instance().cfg = None  # type: ignore[assignment]
