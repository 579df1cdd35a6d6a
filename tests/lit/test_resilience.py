"""Exact resume, interruption, atomic checkpoints, non-finite loss, safe loading, config mismatch."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ddpm_lightning.core import schedules
from ddpm_lightning.core.degradations import Gaussian
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.core.samplers import Ancestral
from ddpm_lightning.lit.checkpoint import check_compatible, read_checkpoint
from ddpm_lightning.lit.module import DiffusionModule, NonFiniteLossError
from ddpm_lightning.lit.resilience import AtomicCheckpointIO
from ddpm_lightning.reporting.runs import event_dir, read_run
from tests.helpers.run import RUN_PID_FILE, TINY, UNBOUNDED, popen, read_step, run_cli, run_pid, wait_for


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(event_dir(run_dir / "tensorboard")))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.mark.e2e
def test_resume_matches_straight_run_and_continues_the_curve(des_ema_runs: dict[str, Path]) -> None:
    straight, run_b, work = des_ema_runs["straight"], des_ema_runs["part"], des_ema_runs["work"]
    # same seed, same settings: the first epoch is identical to the straight run's (determinism)
    acc = EventAccumulator(str(event_dir(des_ema_runs["part_tensorboard"])))
    acc.Reload()
    first = [(e.step, e.value) for e in acc.Scalars("train/loss_step")]
    straight_curve = _scalars(straight, "train/loss_step")
    assert len(first) == 2 and first == straight_curve[: len(first)]

    # run from an empty working directory: nothing may be written outside the run and cache dirs
    assert {p.name for p in work.iterdir()} <= {"b", "resume", ".cache"}
    assert {p.name for p in (work / "resume").iterdir()} <= {".hydra", "train.log"}  # the rest went to b
    tb_runs = [p.name for p in (run_b / "tensorboard").iterdir()]
    # the same TensorBoard run, not one named by the resume
    assert tb_runs == [
        "debug=tiny,degradation=des,callbacks=ema,callbacks.ema.decay=0.9,capacity.channels=[8,8],trainer.max_epochs=1"
    ]
    a = read_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = read_checkpoint(run_b / "checkpoints" / "last.ckpt")  # the resumed run writes into its original run
    assert a["global_step"] == b["global_step"] == 4 and b["epoch"] == 1
    resumed = _scalars(run_b, "train/loss_step")
    assert [s for s, _ in resumed] == [s for s, _ in straight_curve]  # one continuous curve, no gap or repeat
    assert [v for _, v in resumed] == pytest.approx([v for _, v in straight_curve], rel=1e-5)


@pytest.mark.e2e
def test_resume_restores_optimizer_ema_and_des_scale(des_ema_runs: dict[str, Path]) -> None:
    """2 epochs straight == 1 epoch + resume for 1: raw and EMA weights, Adam's moments, the EMA's step
    count and DES's running noise scale."""
    straight, part = des_ema_runs["straight"], des_ema_runs["part"]
    a, b = read_checkpoint(straight / "checkpoints" / "last.ckpt"), read_checkpoint(part / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 4
    assert int(b["state_dict"]["degradation.num_batches"]) == 4  # the scale is a mean over all 4 training batches
    for name in ("state_dict", "current_model_state"):  # EMA weights (+ buffers), raw weights
        assert a[name].keys() == b[name].keys()
        for key, value in a[name].items():
            assert torch.allclose(value.float(), b[name][key].float(), atol=1e-6), (name, key)
    assert a["averaging_state"]["n_averaged"] == b["averaging_state"]["n_averaged"] == 4
    (sa,), (sb,) = a["optimizer_states"], b["optimizer_states"]
    for i, state in sa["state"].items():
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.allclose(state[k], sb["state"][i][k], atol=1e-6), (i, k)


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()
    }


@pytest.mark.e2e
def test_resume_refuses_a_checkpoint_of_another_model(tmp_path: Path, trained_run: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    before = _snapshot(trained_run)
    proc = run_cli(
        "ddpm_lightning.train", *TINY, "capacity=large", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert proc.returncode == 2
    assert _snapshot(trained_run) == before  # the earlier run is untouched
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "different model config" in errors[0] and "capacity.channels" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.e2e
def test_check_compatible_names_the_difference(trained_run: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    run_config = read_checkpoint(ckpt)["ddpm_config"]["module"]  # the module node: what resuming compares
    check_compatible(ckpt, run_config)  # the same config is fine
    changed = {**run_config, "schedule": {**run_config["schedule"], "beta_end": 0.03}}
    with pytest.raises(DDPMError, match=r"schedule.beta_end=0.02 \(now 0.03\)"):
        check_compatible(ckpt, changed)


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell job starts with SIGINT ignored


@pytest.mark.e2e
@pytest.mark.parametrize(
    "sig, rc, name", [(signal.SIGTERM, 143, "SIGTERMException"), (signal.SIGINT, 130, "KeyboardInterrupt")]
)
def test_sigterm_or_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path, sig: int, rc: int, name: str) -> None:
    run_dir = tmp_path / "run"
    log = tmp_path / "log.txt"
    steps = tmp_path / "steps.txt"
    args = list(UNBOUNDED)
    with open(log, "w") as f:
        proc = popen(  # warm: the zygote's client passes the signal on (tests/test_zygote.py)
            "ddpm_lightning.train",
            *args,
            "trainer.max_epochs=1000",
            "data.train_subset=4096",
            "callbacks.progress_bar.refresh_rate=1",
            "+callbacks.steps._target_=tests.helpers.callbacks.StepFile",
            f"+callbacks.steps.path={steps}",
            f"hydra.run.dir={run_dir}",
            stdout=f,
            stderr=subprocess.STDOUT,
            preexec_fn=_restore_sigint,
        )
        # a state, not a time: at least 2 optimizer steps done, however busy the machine is
        reached = wait_for(lambda: read_step(steps) >= 2, proc)
        seen = read_step(steps)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    out = log.read_text()
    assert reached, out[-3000:]
    assert code == rc, out[-3000:]  # 128 + signal number: SIGTERM 143, Ctrl-C 130 (old code: SIGTERM 0, Ctrl-C 1)
    assert f"interrupted ({name})" in out and "Traceback" not in out, out[-3000:]
    errors = re.findall(r"error: .*", out)  # one line, saying how to resume (a progress bar may precede it)
    assert len(errors) == 1 and "interrupted by SIG" in errors[0] and "resume" in errors[0], out[-2000:]
    ckpt = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] >= seen >= 2 and "rng_states" in ckpt and ckpt["optimizer_states"]
    assert not list((run_dir / "checkpoints").glob(".*tmp*"))
    metrics = yaml.safe_load((run_dir / "metrics.yaml").read_text())  # old code: no metrics.yaml at all
    assert metrics["status"].startswith(f"interrupted by {signal.Signals(sig).name}") and "train/loss_step" in metrics
    assert not list(run_dir.glob(".metrics.yaml.tmp-*"))
    listed = read_run(run_dir, run_dir)  # what the report shows of it
    assert listed.status == "incomplete" and "interrupted" in listed.error


@pytest.mark.e2e
def test_sigkill_loses_at_most_the_steps_since_the_last_step_checkpoint(tmp_path: Path) -> None:
    run_dir, pid_file = tmp_path / "run", tmp_path / "run.pid"
    proc = popen(
        "ddpm_lightning.train",
        *UNBOUNDED,
        "trainer.max_epochs=1000",
        "data.train_subset=4096",
        "callbacks.step_checkpoint.every_n_train_steps=2",
        f"hydra.run.dir={run_dir}",
        env={RUN_PID_FILE: str(pid_file)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(lambda: last.is_file() and read_checkpoint(last)["global_step"] >= 4, proc)
    os.kill(run_pid(proc, pid_file), signal.SIGKILL)  # the run itself, from outside: no handler runs
    assert proc.wait(timeout=60) == -signal.SIGKILL  # returns once the run has died
    ckpt = read_checkpoint(last)  # complete and loadable
    assert ckpt["global_step"] >= 4 and ckpt["global_step"] % 2 == 0 and ckpt["epoch"] == 0


@pytest.mark.e2e
def test_mid_epoch_resume_is_exact(mid_epoch_runs: dict[str, Path]) -> None:
    """A run SIGKILLed mid-epoch resumes from its last step checkpoint with the batches that epoch had not
    seen, in the same order, and the same RNG: the result equals a straight run's."""
    straight, cut = mid_epoch_runs["straight"], mid_epoch_runs["cut"]
    # killed right after step 4 (8 batches per epoch): the step checkpoint of step 3 is all that is left
    killed = read_checkpoint(mid_epoch_runs["cut_copy"] / "checkpoints" / "last.ckpt")
    assert killed["global_step"] == 3 and killed["epoch"] == 0
    a, b = read_checkpoint(straight / "checkpoints" / "last.ckpt"), read_checkpoint(cut / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 16 and a["epoch"] == b["epoch"] == 1
    for key, value in a["state_dict"].items():
        assert torch.allclose(value, b["state_dict"][key], atol=1e-6), key
    # one last.ckpt, always the newest state: no stale copy beside a last-v1.ckpt
    for run in (straight, cut):
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_001.ckpt", "last.ckpt"], run


def test_sampling_noise_is_independent_of_the_training_rng() -> None:
    torch.manual_seed(0)
    from ddpm_lightning.core.networks.cnn import CNN

    module = DiffusionModule(CNN(channels=(4,)), schedules.linear(T=10), Gaussian(), Ancestral)
    before = torch.get_rng_state()
    a = module.generate(4, seed=5)
    assert torch.equal(torch.get_rng_state(), before)  # the global (training) RNG is untouched
    torch.rand(1000)  # training draws in between do not change the grid
    assert torch.equal(a, module.generate(4, seed=5))
    assert not torch.equal(a, module.generate(4, seed=6))


def test_atomic_save_never_leaves_a_truncated_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, path)

    def killed_midway(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # the process dies during the write

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(io.load_checkpoint(path)["w"], torch.ones(3))  # the previous file, intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


class _NaNAfter(nn.Module):
    """A network that starts producing NaN after ``n`` calls."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.calls, self.n = 0, n

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return z * self.w * (float("nan") if self.calls > self.n else 1.0)


@pytest.mark.e2e
def test_non_finite_loss_stops_training_without_a_best_checkpoint(tmp_path: Path) -> None:
    module = DiffusionModule(_NaNAfter(3), schedules.linear(T=10), Gaussian(), Ancestral)
    data = TensorDataset(torch.rand(64, 1, 28, 28) * 2 - 1, torch.zeros(64))
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", save_last=True)
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite training loss \(nan\) at global step 3, epoch 0, batch 3: "
        r"batch min .* max .* mean .* std .*",
    ):
        trainer.fit(module, DataLoader(data, batch_size=8))
    assert not list(tmp_path.glob("*.ckpt"))


def test_unsafe_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _NaNAfter(1)}, path)  # needs code (a class) to unpickle
    with pytest.raises(DDPMError, match="cannot load checkpoint .* safely"):
        read_checkpoint(path)
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DDPMError, match="cannot load checkpoint"):
        read_checkpoint(truncated)
