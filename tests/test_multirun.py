"""Study experiments, launchers and the Optuna search compose; a multirun with a failing job runs the
others (joblib launcher) and the report marks the failed one; a 2-trial Optuna search runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.report import report
from tests.helpers.config import compose_train as _compose_train
from tests.helpers.config import only_core_callbacks
from tests.helpers.run import TINY_SWEEP as TINY
from tests.helpers.run import run_module

STUDY = {  # experiment -> (schedule, channels, degradation)
    "study_linear": ("linear", [16, 32, 32, 16], "Gaussian"),
    "study_geometric": ("geometric", [16, 32, 32, 16], "Gaussian"),
    "study_custom": ("custom", [16, 32, 32, 16], "Gaussian"),
    "study_large": ("linear", [64, 128, 256, 128, 64], "Gaussian"),
    "study_des": ("linear", [16, 32, 32, 16], "EntropyScaled"),
}


def compose_train(*overrides: str) -> DictConfig:
    return _compose_train(*overrides, return_hydra_config=True)


@pytest.mark.parametrize("experiment", sorted(STUDY))
def test_study_experiments(experiment: str) -> None:
    cfg = compose_train(f"experiment={experiment}")
    schedule, channels, degradation = STUDY[experiment]
    assert cfg.schedule._target_.endswith(f".{schedule}") and cfg.schedule.beta_end == 0.02
    assert list(cfg.capacity.channels) == channels and cfg.model._target_.endswith(".CNN")
    assert cfg.degradation._target_.endswith(f".{degradation}")
    assert (cfg.T, cfg.trainer.max_epochs, cfg.optimizer.lr, cfg.data.batch_size) == (1000, 50, 2e-4, 128)
    metrics = cfg.callbacks.generative_metrics  # FID, KID, classifier FID, PSNR/SSIM: N = 1000 every epoch
    assert (metrics.n, metrics.every_n_epochs) == (1000, 1) and metrics.fid and metrics.kid and metrics.fid_mnist


def test_study_sweep_runs_each_study_experiment_once() -> None:
    cfg = compose_train("experiment=study")
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    ((key, values),) = cfg.hydra.sweeper.params.items()
    assert key == "+experiment@_global_" and sorted(values.split(",")) == sorted(STUDY)
    # what each job composes: the sweep file plus one study experiment on top
    job = compose_train("experiment=study", "+experiment@_global_=study_large")
    assert list(job.capacity.channels) == STUDY["study_large"][1]


def test_launchers_compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert compose_train("hydra/launcher=local").hydra.launcher._target_.endswith("BasicLauncher")
    joblib = compose_train("hydra/launcher=parallel").hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher") and joblib.n_jobs == 2

    # SLURM: the sbatch script submitit would submit, built the way the plugin builds it (no cluster
    # here; submitit only checks that an `srun` exists).
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    cfg = compose_train(
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("SlurmLauncher")  # type: ignore[union-attr]
    executor = submitit.AutoExecutor(
        folder=params.pop("submitit_folder"), cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    sbatch = executor._executor._make_submission_file_text("python -m ddpm_lightning.train", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--time=720"):
        assert f"#SBATCH {line}" in sbatch, sbatch
    assert f"{tmp_path / 'sweep'}/.submitit/" in sbatch


def test_hparams_search_composes() -> None:
    cfg = compose_train("hparams_search=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert cfg.optimized_metric == "val/fid_mnist"
    assert set(sweeper.params) == {"optimizer.lr", "schedule.beta_end", "capacity"}


@pytest.mark.e2e
def test_a_failing_job_does_not_stop_the_others(tmp_path: Path) -> None:
    """Two jobs at once (joblib launcher, conf/hydra/launcher/parallel.yaml: two worker processes); the first,
    β2 = 2.0, is invalid. The second still runs (checkpoint, metrics), Hydra exits non-zero once both have finished,
    the report marks the first failed."""
    sweep = tmp_path / "sweep"
    proc = run_module(
        "ddpm_lightning.train",
        "-m",
        "hydra/launcher=parallel",
        "schedule.beta_end=2.0,0.02",
        *TINY,
        "trainer.max_epochs=1",
        *only_core_callbacks(),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "schedule.beta_end must lie in (0, 1), got 2.0" in (sweep / "0" / "FAILED").read_text()
    assert not (sweep / "1" / "FAILED").exists()
    assert (sweep / "1" / "metrics.yaml").is_file() and (sweep / "1" / "checkpoints" / "last.ckpt").is_file()

    paths = report(sweep)
    table = pd.read_csv(paths["csv"])
    assert list(table["status"]) == ["failed", "ok"]
    assert "beta_end" in table["error"][0] and pd.isna(table["val/loss"][0]) and table["val/loss"][1] > 0
    markdown = paths["markdown"].read_text()
    assert "| 0 | **failed** |" in markdown and "2 runs: 1 finished, 1 failed" in markdown
    assert "schedule of run 0 not drawn" in markdown  # its schedule cannot be built; said so


@pytest.mark.e2e
def test_optuna_search_two_trials(tmp_path: Path) -> None:
    """The search's best value is the smallest final val/loss among its trials."""
    sweep = tmp_path / "search"
    proc = run_module(
        "ddpm_lightning.train",
        "hparams_search=optuna",
        "optimized_metric=val/loss",
        "hydra.sweeper.n_trials=2",
        *TINY,
        "trainer.max_epochs=1",
        *only_core_callbacks(),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    trials = [OmegaConf.load(sweep / str(i) / "metrics.yaml")["val/loss"] for i in range(2)]
    assert results.best_value == pytest.approx(min(trials))
    assert set(results.best_params) == {"optimizer.lr", "schedule.beta_end", "capacity"}
    assert 0.005 <= results.best_params["schedule.beta_end"] <= 0.05
    assert f"Optuna search: best value {results.best_value}" in report(sweep)["markdown"].read_text()
