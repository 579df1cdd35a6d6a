"""Issue 15.5, 15.6, 15.7, 15.11 and 17.12: bad values, unwritable outputs, a corrupt run file, odd checkpoint
paths, a NaN update, start-up failures: one line, exit 2, nothing lost, no clutter under outputs/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ddpm_lightning.lit.checkpoint import read_checkpoint
from ddpm_lightning.report import main as report_main
from tests.helpers.run import TINY, run_cli

pytestmark = pytest.mark.e2e  # every test here runs an entry point in a subprocess


def _one_error(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize(
    "override, needle",
    [
        ("trainer.max_epochs=-2", "`max_epochs` must be a non-negative integer or -1"),
        ("optimizer.lr=-1", "optimizer.lr=-1"),
    ],
)
def test_bad_trainer_or_optimizer_value_is_one_line_and_leaves_no_run_folder(
    tmp_path: Path, data_dir: Path, override: str, needle: str
) -> None:
    proc = run_cli("ddpm_lightning.train", *TINY, override, env={"DDPM_ROOT": str(tmp_path)}, cwd=tmp_path)
    assert needle in _one_error(proc)  # old code: five Hydra lines / a traceback, status 1
    # 17.12: a single run that failed at start-up removes the folder Hydra named for it
    runs = tmp_path / "outputs" / "train" / "runs"
    assert not (list(runs.iterdir()) if runs.is_dir() else []), list(
        runs.rglob("*")
    )  # old code: <date>/<time>/ with FAILED


def test_unwritable_outputs_fail_in_one_line_before_the_work(tmp_path: Path, trained_run: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, so nothing can be created under it\n")  # tests run as root: chmod would not stop them
    ckpt = f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}"
    proc = run_cli("ddpm_lightning.train", *TINY, f"hydra.run.dir={blocker / 'run'}")
    assert "output directory" in _one_error(proc) and "hydra.run.dir" in proc.stderr
    proc = run_cli(
        "ddpm_lightning.sample", ckpt, "n=4", f"output={blocker / 's.png'}", f"hydra.run.dir={tmp_path / 's'}"
    )
    assert "not writable" in _one_error(proc)
    proc = run_cli(
        "ddpm_lightning.evaluate",
        ckpt,
        "n=8",
        "metrics.fid=false",
        "metrics.kid=false",
        f"output={blocker / 'm.json'}",
        f"hydra.run.dir={tmp_path / 'e'}",
    )
    assert "not writable" in _one_error(proc) and "sampled" not in proc.stdout + proc.stderr  # before sampling
    proc = run_cli(
        "ddpm_lightning.evaluate",
        ckpt,
        "n=8",
        "metrics.fid=false",
        "metrics.kid=false",
        f"metrics.cache_dir={blocker / 'cache'}",
        f"hydra.run.dir={tmp_path / 'c'}",
    )
    assert "feature cache directory" in _one_error(proc) and "sampled" not in proc.stdout + proc.stderr


def test_report_marks_a_run_with_a_corrupt_metrics_file_and_goes_on(tmp_path: Path, trained_run: Path) -> None:
    for name in ("a", "b"):
        shutil.copytree(trained_run, tmp_path / name, ignore=shutil.ignore_patterns("*.ckpt"))
    metrics = tmp_path / "b" / "metrics.yaml"
    metrics.write_text(metrics.read_text()[:25] + ": [\n")  # a kill mid-write (before writes were atomic)
    assert report_main([str(tmp_path)]) == 0  # old code: status 2, no report
    text = (tmp_path / "report.md").read_text()
    assert "1 finished, 1 failed" in text and f"cannot read {metrics}" in text


def test_checkpoint_path_mistakes_are_named(tmp_path: Path, trained_run: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, not a checkpoint\n")
    proc = run_cli("ddpm_lightning.sample", f"ckpt_path={text}", f"hydra.run.dir={tmp_path / 's1'}")
    assert "is not a PyTorch checkpoint" in _one_error(proc)  # old code: '...: 101'
    proc = run_cli("ddpm_lightning.sample", f"ckpt_path={trained_run}", f"hydra.run.dir={tmp_path / 's2'}")
    assert "is a directory" in _one_error(proc) and "checkpoints/last.ckpt" in proc.stderr  # old code: "not found"
    proc = run_cli(
        "ddpm_lightning.sample", f"ckpt_path={tmp_path / 'données' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 's3'}"
    )
    assert "quote" in _one_error(proc)  # old code: the lexer's error alone


def test_a_non_finite_update_is_never_checkpointed(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    args = [*TINY, "trainer.limit_train_batches=null"]
    proc = run_cli(
        "ddpm_lightning.train",
        *args,
        "callbacks.step_checkpoint.every_n_train_steps=2",
        "+callbacks.poison._target_=tests.helpers.callbacks.PoisonAt",
        "+callbacks.poison.step=2",
        f"hydra.run.dir={run}",
    )
    assert "non-finite weights at global step 2" in _one_error(proc)
    for ckpt in (run / "checkpoints").glob("*.ckpt"):  # old code: last.ckpt of step 2, all NaN
        assert all(v.isfinite().all() for v in read_checkpoint(ckpt)["state_dict"].values() if v.is_floating_point()), (
            ckpt
        )
    assert yaml.safe_load((run / "FAILED").read_text()).startswith(
        "non-finite weights"
    )  # a folder the user named: kept, marked
