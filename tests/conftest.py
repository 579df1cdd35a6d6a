"""Shared test fixtures: the real MNIST files and a tiny trained run (the helpers themselves: tests/helpers/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import run
from tests.helpers.run import DATA_DIR, TINY, run_cli


def pytest_configure(config: pytest.Config) -> None:
    """In-process tests run torch on one thread (``DDPM_TEST_THREADS=<n>`` to change it): the suite shares a few busy
    cores, where torch's default (a thread per core) made the samplers' many small steps 10-20x slower than one
    thread. Results do not depend on it; entry points in subprocesses keep their own setting."""
    import torch

    torch.set_num_threads(int(os.environ.get("DDPM_TEST_THREADS", "1")))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the ``trained_run`` fixture (a training through the entry point) is an e2e test, marked or
    not: so ``-m "not e2e"`` leaves it out, and an unmarked one cannot make the shared fixture fail for all."""
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the test's fixtures (a module-scoped fixture may run a training): only e2e tests run entry points."""
    run.E2E_ALLOWED[0] = item.get_closest_marker("e2e") is not None
    run.guard_fit()


def pytest_runtest_teardown(item: pytest.Item) -> None:
    run.E2E_ALLOWED[0] = True


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"real MNIST files not found under {DATA_DIR}/MNIST/raw (set DDPM_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A tiny 2-epoch run through the real entry point, shared by the tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    proc = run_cli("ddpm_lightning.train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir
