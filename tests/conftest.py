"""Shared test fixtures: the real MNIST files and a tiny trained run (the helpers themselves: tests/helpers/)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from tests.helpers import run
from tests.helpers.run import DATA_DIR, DES_EMA, MID_EPOCH, TINY, run_cli


def pytest_configure(config: pytest.Config) -> None:
    """In-process tests run torch on one thread (``DDPM_TEST_THREADS=<n>`` to change it): the suite shares a few busy
    cores, where torch's default (a thread per core) made the samplers' many small steps 10-20x slower than one
    thread. Results do not depend on it. Entry points in subprocesses get the same through ``OMP_NUM_THREADS``
    (unless set already): with two threads a tiny training spent ~3x the CPU time (26 s vs 9 s) on 2 busy cores,
    its OpenMP threads spinning at barriers while other jobs held the cores."""
    threads = os.environ.get("DDPM_TEST_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    controller = getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ
    if not controller:  # the xdist controller runs no test: it does not load torch (seconds of CPU)
        import torch

        torch.set_num_threads(int(threads))
    elif os.environ.get("DDPM_TEST_COLD") != "1":  # the workers' launches share one zygote
        os.environ[run.SHARED_ZYGOTE] = run.start_zygote()


def pytest_unconfigure(config: pytest.Config) -> None:
    run.stop_zygote()  # the warm start of the entry-point launches (tests/helpers/run.py), if one was started


SHARED_RUNS = ("trained_run", "des_ema_runs", "mid_epoch_runs")  # session fixtures below: trainings


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a shared training fixture (``trained_run``, ``des_ema_runs``, ``mid_epoch_runs``: trainings
    through the entry point) is an e2e test, marked or not: so ``-m "not e2e"`` leaves it out, and an unmarked one
    cannot make the shared fixture fail for all."""
    for item in items:
        if set(SHARED_RUNS) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the test's fixtures (a module-scoped fixture may run a training): only e2e tests run entry points."""
    run.E2E_ALLOWED[0] = item.get_closest_marker("e2e") is not None
    run.guard_fit()
    seed_everything(item.nodeid)


def seed_everything(nodeid: str) -> None:
    """The global RNGs (random, numpy, torch) seeded from the test's id before each test: a test that draws
    unseeded numbers gets the same ones whatever ran before it in its worker (test_entropy once failed on a draw
    that depended on the order the workers ran the files in)."""
    import random
    import zlib

    import numpy as np
    import torch

    seed = zlib.crc32(nodeid.encode())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    run.E2E_ALLOWED[0] = True


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"real MNIST files not found under {DATA_DIR}/MNIST/raw (set DDPM_DATA_DIR)")
    return DATA_DIR


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder made by ``build(folder)`` once per test session, and a copy of it for this worker: under
    pytest-xdist the first worker to ask builds it (the others wait on a file lock, then copy), so the suite
    trains each shared run once, not once per worker; each worker's tests get a copy of their own, as before."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:  # one process: build in place
        folder = factory.mktemp(name)
        build(folder)
        return folder
    shared = factory.getbasetemp().parent / "built_once"  # the session's temp root, common to its workers
    shared.mkdir(exist_ok=True)
    source = shared / name
    with FileLock(str(source) + ".lock"):
        if not (source / ".built").is_file():
            shutil.rmtree(source, ignore_errors=True)  # a worker that failed building it left a part
            source.mkdir()
            build(source)
            (source / ".built").touch()
    copy = factory.mktemp(name)
    shutil.copytree(source, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".built"))
    return copy


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A tiny 2-epoch run through the real entry point, shared by the tests that need a checkpoint."""

    def build(tmp: Path) -> None:
        proc = run_cli("ddpm_lightning.train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={tmp / 'run'}")
        assert proc.returncode == 0, proc.stderr[-3000:]

    return built_once(tmp_path_factory, "trained", build) / "run"


@pytest.fixture(scope="session")
def des_ema_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """``straight``: 2 epochs; ``part``: 1 epoch, then resumed for 1 more into the same run (``part_loss_step``:
    its TensorBoard train/loss_step file before the resume). The part run and its resume start in an empty working
    directory (``work``), so a test sees what they write outside their run and cache folders."""
    tmp = built_once(tmp_path_factory, "des_ema", _des_ema_runs)
    return {
        "straight": tmp / "straight",
        "part": tmp / "work" / "b",
        "work": tmp / "work",
        "part_tensorboard": tmp / "part_tensorboard",
    }


def _des_ema_runs(tmp: Path) -> None:
    straight, work = tmp / "straight", tmp / "work"
    proc = run_cli("ddpm_lightning.train", *DES_EMA, "trainer.max_epochs=2", f"hydra.run.dir={straight}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    work.mkdir()
    part = work / "b"
    proc = run_cli("ddpm_lightning.train", *DES_EMA, "trainer.max_epochs=1", f"hydra.run.dir={part}", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.copytree(part / "tensorboard", tmp / "part_tensorboard")
    proc = run_cli(
        "ddpm_lightning.train",
        *DES_EMA,
        "trainer.max_epochs=2",
        f"ckpt_path={part / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={work / 'resume'}",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="session")
def mid_epoch_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """``straight``: 2 epochs (16 steps); ``cut``: the same, SIGKILLed right after step 4, so only the step
    checkpoint of step 3 (48 images) is left (``cut.txt``: a fingerprint per image it trained on; ``cut_copy``: the
    run as the kill left it), then resumed to the end into the same run."""
    tmp = built_once(tmp_path_factory, "mid_epoch", _mid_epoch_runs)
    return {
        "straight": tmp / "straight",
        "cut": tmp / "cut",
        "cut_copy": tmp / "cut_copy",
        "cut_txt": tmp / "cut.txt",
        "tmp": tmp,
    }


def _mid_epoch_runs(tmp: Path) -> None:
    straight, cut = tmp / "straight", tmp / "cut"
    proc = run_cli("ddpm_lightning.train", *MID_EPOCH, f"hydra.run.dir={straight}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli(
        "ddpm_lightning.train",
        *MID_EPOCH,
        "+callbacks.record._target_=tests.helpers.callbacks.RecordBatches",
        f"+callbacks.record.path={tmp / 'cut.txt'}",
        "+callbacks.kill._target_=tests.helpers.callbacks.KillAt",
        "+callbacks.kill.step=4",
        f"hydra.run.dir={cut}",
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    shutil.copytree(cut, tmp / "cut_copy")
    proc = run_cli(
        "ddpm_lightning.train",
        *MID_EPOCH,
        f"ckpt_path={cut / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp / 'r'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
