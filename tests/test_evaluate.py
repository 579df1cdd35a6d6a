"""``python -m ddpm_lightning.evaluate``: samples -> all metrics -> JSON in its run dir + a printed table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddpm_lightning.build import load_module
from tests.helpers.run import FID_WEIGHTS, run_cli

pytestmark = pytest.mark.e2e  # every test here runs an entry point in a subprocess

ALL = {"psnr", "ssim", "fid", "kid", "kid_std", "fid_mnist", "class_entropy", "modes_covered"}
TRUST = {"fid_floor", "fid_mnist_floor", "fid_mnist_ci_low", "fid_mnist_ci_high"}  # floors and the bootstrap interval


def test_evaluate_all_metrics_with_ddim(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval"
    proc = run_cli(
        "ddpm_lightning.evaluate",
        f"ckpt_path={ckpt}",
        "n=4",
        "sampler=ddim",
        "sampler.num_steps=5",
        "metrics.kid_subsets=3",
        "metrics.psnr_references=20",
        "metrics.inception_dims=64",
        f"metrics.inception_weights={FID_WEIGHTS}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={out}",
        warm=False,  # cold: a fresh interpreter, as a user starts it (one launch per entry point)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    denoise = {f"denoise_{m}_t{t}" for t in (2, 10, 18) for m in ("psnr", "ssim")}  # T = 20: 0.1/0.5/0.9 T
    assert set(report["metrics"]) == ALL | TRUST | denoise
    m = report["metrics"]
    assert m["fid_mnist_ci_low"] < m["fid_mnist_ci_high"] and m["fid_floor"] > 0 and m["fid_mnist_floor"] > 0
    s = report["settings"]
    assert s["floor"].startswith("FID (same extractor) between the first 4 train and the first 4 test images")
    assert s["samples"]["sampler"] == {
        "name": "ddim",
        "steps": 5,
        "eta": 0.0,
        "num_steps": 5,
        "spacing": "linear",
    }  # sampler=ddim replaced the checkpoint's
    assert s["samples"]["precision"] == load_module(ckpt)[1].trainer.precision  # the run's training precision
    assert s["samples"]["n_generated"] == 4 and s["real"] == {"split": "test", "n_real": 4}
    assert s["fid"]["extractor"].startswith("inception-v3-compat-64-tf1-bilinear, 64-d") and s["fid"]["weights"] == str(
        FID_WEIGHTS
    )
    assert s["kid"]["subset_size"] == 4 and s["kid"]["subsets"] == 1 and s["fid_mnist"]["test_accuracy"] >= 0.99
    assert s["psnr/ssim"]["references"] == 20 and s["psnr/ssim"]["pixel_range"] == "[0, 1]"
    assert s["denoise"]["timesteps"] == [2, 10, 18] and s["checkpoint"] == str(ckpt.resolve())
    assert sum(report["class_counts"]) == 4 and set(report["timings_s"]) >= {
        "generate_s",
        "inception_s",
        "classifier_s",
    }
    lines = proc.stdout.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("metric ")) :]  # after the log lines
    assert lines[0].split() == ["metric", "value", "computed", "on"]
    for key in ALL | TRUST | denoise:
        assert any(line.split()[0] == key for line in lines[1:]), key
    fid_line = next(line for line in lines if line.startswith("fid "))
    assert (
        "4 samples (ddim, 5 steps, seed 1234) vs 4 test images, inception-v3-compat-64-tf1-bilinear, 64-d" in fid_line
    )
    assert (out / "samples.png").is_file() and len(
        list((tmp_path / "cache" / "features").glob("*.pt"))
    ) == 4  # test + train


def test_evaluate_checkpoint_sampler_and_switches(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval"
    proc = run_cli(
        "ddpm_lightning.evaluate",
        f"ckpt_path={ckpt}",
        "n=4",
        "metrics.fid=false",
        "metrics.kid=false",
        "metrics.psnr_ssim=false",
        "denoise=null",
        "save_grid=0",
        f"output={tmp_path / 'm.json'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "m.json").read_text())
    assert set(report["metrics"]) == {
        "fid_mnist",
        "fid_mnist_floor",
        "fid_mnist_ci_low",
        "fid_mnist_ci_high",
        "class_entropy",
        "modes_covered",
    }
    assert report["settings"]["samples"]["sampler"] == {"name": "ancestral", "steps": 20, "variance": "beta"}
    assert "fid" not in report["settings"] and not (out / "samples.png").exists()
    assert sorted(p.name.split("_")[:2] for p in (tmp_path / "cache" / "features").iterdir()) == [
        ["test", "n4"],
        ["train", "n4"],
    ]


def test_evaluate_errors_are_one_line(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    proc = run_cli(
        "ddpm_lightning.evaluate",
        f"ckpt_path={ckpt}",
        "n=4",
        "metrics.inception_weights=/no/w.pth",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'a'}",
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("error: Inception weights not found: /no/w.pth (from metrics.inception_weights)")
    )  # evaluate's own key
    proc = run_cli(
        "ddpm_lightning.evaluate",
        f"ckpt_path={ckpt}",
        f"data_root={tmp_path / 'nowhere'}",
        f"hydra.run.dir={tmp_path / 'd'}",
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        proc.returncode == 2
        and last.startswith("error: MNIST files missing in")
        and last.endswith("set DDPM_DATA_DIR or data_root=<a folder holding MNIST/raw/>")
    )  # not train's data.root / data.download
    proc = run_cli("ddpm_lightning.evaluate", f"ckpt_path={tmp_path / 'none.ckpt'}", f"hydra.run.dir={tmp_path / 'b'}")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: checkpoint not found")
    off = [f"metrics.{k}=false" for k in ("psnr_ssim", "fid", "kid", "fid_mnist")] + ["denoise=null"]
    proc = run_cli(
        "ddpm_lightning.evaluate",
        f"ckpt_path={ckpt}",
        *off,
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'c'}",
    )
    assert proc.returncode == 2 and "every metric is switched off" in proc.stderr.strip().splitlines()[-1]


def test_metrics_group_choice_is_checked(tmp_path: Path) -> None:
    proc = run_cli("ddpm_lightning.evaluate", "ckpt_path=x.ckpt", "metrics=nope", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: unknown metrics 'nope'; valid choices: default, study"
