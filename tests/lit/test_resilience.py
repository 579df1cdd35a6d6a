"""Exact resume, interruption, atomic checkpoints, non-finite loss, safe loading, config mismatch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
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
from tests.conftest import DATA_DIR, TINY, run_cli


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_resume_matches_straight_run_and_continues_the_curve(tmp_path: Path, trained_run: Path) -> None:
    run_b = tmp_path / "b"
    # run from an empty working directory: nothing may be written outside the run and cache dirs
    proc = run_cli("ddpm_lightning.train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={run_b}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = _scalars(run_b, "train/loss_step")
    # same seed, same settings: the first epoch is identical to the straight run's (determinism)
    straight = _scalars(trained_run, "train/loss_step")
    assert first == straight[: len(first)]

    proc = run_cli("ddpm_lightning.train", *TINY, "trainer.max_epochs=2", f"ckpt_path={run_b / 'checkpoints' / 'last.ckpt'}",
                   f"hydra.run.dir={tmp_path / 'resume'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in tmp_path.iterdir()} <= {"b", "resume", ".cache"}
    assert {p.name for p in (tmp_path / "resume").iterdir()} <= {".hydra", "train.log"}  # the rest went to b
    a = read_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    b = read_checkpoint(run_b / "checkpoints" / "last.ckpt")  # the resumed run writes into its original run
    assert a["global_step"] == b["global_step"] == 4 and b["epoch"] == 1
    for key, value in a["state_dict"].items():
        assert torch.allclose(value, b["state_dict"][key], atol=1e-6), key
    resumed = _scalars(run_b, "train/loss_step")
    assert [s for s, _ in resumed] == [s for s, _ in straight]  # one continuous curve, no gap or repeat
    assert [v for _, v in resumed] == pytest.approx([v for _, v in straight], rel=1e-5)


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path: Path, trained_run: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    proc = run_cli("ddpm_lightning.train", *TINY, "capacity=large", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "different model config" in errors[0] and "capacity.channels" in errors[0]
    assert "Traceback" not in proc.stderr


def test_check_compatible_names_the_difference(trained_run: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    run_config = read_checkpoint(ckpt)["ddpm_config"]
    check_compatible(ckpt, run_config)  # the same config is fine
    changed = {**run_config, "schedule": {**run_config["schedule"], "beta_end": 0.03}}
    with pytest.raises(DDPMError, match=r"schedule.beta_end=0.02 \(now 0.03\)"):
        check_compatible(ckpt, changed)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    log = tmp_path / "log.txt"
    args = [a for a in TINY if not a.startswith(("+trainer.limit_train_batches", "trainer.max_epochs"))]
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ddpm_lightning.train", *args, "trainer.max_epochs=1000", "data.train_subset=4096",
             "callbacks.progress_bar.refresh_rate=1", f"hydra.run.dir={run_dir}"],
            stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "DDPM_DATA_DIR": str(DATA_DIR)},
        )
        deadline = time.time() + 120
        while "Epoch 0:" not in log.read_text() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        time.sleep(2)  # a few steps into the epoch
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    out = log.read_text()
    assert rc == 0, out[-3000:]
    assert "interrupted (SIGTERMException)" in out
    ckpt = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] > 0 and "rng_states" in ckpt
    assert not list((run_dir / "checkpoints").glob(".*tmp*"))


def test_sigkill_loses_at_most_the_steps_since_the_last_step_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [a for a in TINY if not a.startswith(("+trainer.limit_train_batches", "trainer.max_epochs"))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddpm_lightning.train", *args, "trainer.max_epochs=1000", "data.train_subset=4096",
         "callbacks.step_checkpoint.every_n_train_steps=2", f"hydra.run.dir={run_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "DDPM_DATA_DIR": str(DATA_DIR)},
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and read_checkpoint(last)["global_step"] >= 4:
            break
        time.sleep(0.5)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=60)
    ckpt = read_checkpoint(last)  # complete and loadable
    assert ckpt["global_step"] >= 4 and ckpt["global_step"] % 2 == 0 and ckpt["epoch"] == 0


def test_mid_epoch_resume_is_exact(tmp_path: Path, data_dir: Path) -> None:
    """A step checkpoint taken mid-epoch (as SIGKILL leaves it) resumes with the batches that epoch had
    not seen, in the same order, and the same RNG: the result equals a straight run's."""
    args = [a for a in TINY if not a.startswith(("+trainer.limit_train_batches", "trainer.max_epochs"))]
    args += ["data.train_subset=512", "trainer.max_epochs=2", "callbacks.step_checkpoint.every_n_train_steps=3"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert run_cli("ddpm_lightning.train", *args, f"hydra.run.dir={straight}").returncode == 0
    assert run_cli("ddpm_lightning.train", *args, "+trainer.max_steps=3", f"hydra.run.dir={cut}").returncode == 0
    last = cut / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 3 and read_checkpoint(last)["epoch"] == 0  # mid-epoch (8 batches)
    proc = run_cli("ddpm_lightning.train", *args, f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'resume'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read_checkpoint(straight / "checkpoints" / "last.ckpt"), read_checkpoint(last)
    assert a["global_step"] == b["global_step"] >= 14 and a["epoch"] == b["epoch"] == 1
    for key, value in a["state_dict"].items():
        assert torch.allclose(value, b["state_dict"][key], atol=1e-6), key


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


def test_non_finite_loss_stops_training_without_a_best_checkpoint(tmp_path: Path) -> None:
    module = DiffusionModule(_NaNAfter(3), schedules.linear(T=10), Gaussian(), Ancestral)
    data = TensorDataset(torch.rand(64, 1, 28, 28) * 2 - 1, torch.zeros(64))
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", save_last=True)
    trainer = pl.Trainer(max_epochs=3, callbacks=[ckpt], logger=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at global step 3, epoch 0, batch 3: "
                       r"batch min .* max .* mean .* std .*"):
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
