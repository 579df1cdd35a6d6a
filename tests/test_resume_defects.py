"""Issue 15.1, 15.3, 15.4, 15.8, 15.9, 15.10, 15.11 (stale temporary files): resume loses nothing and
writes nothing it should not, through ``python -m ddpm_lightning.train`` as a user runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddpm_lightning.lit.checkpoint import read_checkpoint
from ddpm_lightning.reporting.runs import event_dir, find_runs
from tests.helpers.run import MID_EPOCH, TINY, run_cli

pytestmark = pytest.mark.e2e  # every test here runs an entry point in a subprocess


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file with its size and mtime, every folder (a folder's mtime changes when a file is added and removed)."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
        for p in run_dir.rglob("*")
    }


def _copy(trained_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run


def test_resuming_a_finished_run_is_refused_and_keeps_its_metrics(tmp_path: Path, trained_run: Path) -> None:
    run = _copy(trained_run, tmp_path)
    before = _snapshot(run)
    proc = run_cli(
        "ddpm_lightning.train",
        *TINY,
        "trainer.max_epochs=2",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        env={"DDPM_ROOT": str(tmp_path)},
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[
        -2000:
    ]  # old code: 0, metrics.yaml replaced by {num_parameters, train_time_s}
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "nothing left to train" in errors[0] and "trainer.max_epochs > 2" in errors[0]
    assert _snapshot(run) == before  # metrics.yaml, TensorBoard events: untouched
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "bad", [("optimizer.lr=-1",), ("callbacks=metrics", "callbacks.generative_metrics.n=8")], ids=["lr", "fid-weights"]
)
def test_a_resume_that_fails_at_start_up_writes_nothing_into_the_run(
    tmp_path: Path, trained_run: Path, bad: tuple[str, ...]
) -> None:
    run = _copy(trained_run, tmp_path)
    before = _snapshot(run)
    proc = run_cli(
        "ddpm_lightning.train",
        *TINY,
        *bad,
        "trainer.max_epochs=3",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        env={"DDPM_ROOT": str(tmp_path), "DDPM_FID_WEIGHTS": str(tmp_path / "missing.pth")},
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]  # lr: old code printed a traceback, status 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert _snapshot(run) == before  # old code: an empty events file in run/tensorboard/
    assert not (tmp_path / "outputs").exists()


def test_resume_applies_the_new_lr_leaves_no_stub_folder_and_cleans_stale_temporary_files(
    tmp_path: Path, trained_run: Path
) -> None:
    run = _copy(trained_run, tmp_path)
    stale = run / "checkpoints" / ".last.ckpt.tmp-999999999"  # left by a SIGKILL during a save (no such pid)
    stale.write_bytes(b"partial")
    proc = run_cli(
        "ddpm_lightning.train",
        *TINY,
        "trainer.max_epochs=3",
        "optimizer.lr=1e-4",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        env={"DDPM_ROOT": str(tmp_path)},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 6
    assert [g["lr"] for g in ckpt["optimizer_states"][0]["param_groups"]] == [1e-4]  # old code: 2e-4, silently
    assert "optimizer.lr 0.0002 -> 0.0001 (the configured value is applied)" in proc.stdout + proc.stderr
    # the resume's own Hydra files sit in the run, not in a stub folder the report would list (old code)
    assert not (tmp_path / "outputs").exists()
    assert find_runs(tmp_path) == [run]
    (resume,) = (run / "resumes").iterdir()
    assert (resume / ".hydra" / "overrides.yaml").is_file() and (resume / "train.log").is_file()
    assert not stale.exists()  # old code: left forever


def _loss_epoch(run: Path) -> list[float]:
    acc = EventAccumulator(str(event_dir(run / "tensorboard")))
    acc.Reload()
    return [e.value for e in acc.Scalars("train/loss_epoch")]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_mid_epoch_resume_keeps_the_epoch_mean_loss_and_counts_samples_not_batches(
    tmp_path: Path, mid_epoch_runs: dict[str, Path]
) -> None:
    """8 batches of 16 per epoch; killed after step 4, the step checkpoint of step 3 (48 samples) is left."""
    # 15.3: the resumed epoch's mean covers all its batches, as in the straight run (old code: only the last 5)
    assert _loss_epoch(mid_epoch_runs["cut"]) == pytest.approx(_loss_epoch(mid_epoch_runs["straight"]), rel=1e-5)

    # 15.10: another batch size on resume trains exactly the 80 samples the epoch had not seen
    other = tmp_path / "other"
    shutil.copytree(mid_epoch_runs["cut_copy"], other)
    proc = run_cli(
        "ddpm_lightning.train",
        *MID_EPOCH,
        "trainer.max_epochs=1",  # the rest of the cut epoch only
        "+callbacks.record._target_=tests.helpers.callbacks.RecordBatches",
        f"+callbacks.record.path={tmp_path / 'resumed.txt'}",
        "data.batch_size=8",
        f"ckpt_path={other / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'r2'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = _lines(mid_epoch_runs["cut_txt"])[:48], _lines(tmp_path / "resumed.txt")
    assert len(after) == 80 and not set(before) & set(after)  # old code: 104 samples, 24 of them trained twice
    assert len(set(before) | set(after)) == 128


def test_a_resume_that_fails_after_training_started_marks_the_run_until_a_good_resume(
    tmp_path: Path, trained_run: Path
) -> None:
    """17.12: the failure is shown where the report looks (the run), and the resume's log is kept."""
    run = _copy(trained_run, tmp_path)
    ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    proc = run_cli(
        "ddpm_lightning.train",
        *TINY,
        "trainer.max_epochs=3",
        ckpt,
        "+callbacks.poison._target_=tests.helpers.callbacks.PoisonAt",
        "+callbacks.poison.step=5",
        env={"DDPM_ROOT": str(tmp_path)},
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "non-finite training loss" in proc.stderr, proc.stderr[-2000:]
    assert "non-finite" in (run / "FAILED").read_text()
    (resume,) = (run / "resumes").iterdir()
    assert (resume / "train.log").is_file() and (resume / "FAILED").is_file()
    proc = run_cli(
        "ddpm_lightning.train", *TINY, "trainer.max_epochs=3", ckpt, env={"DDPM_ROOT": str(tmp_path)}, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (run / "FAILED").exists() and (run / "metrics.yaml").is_file()
