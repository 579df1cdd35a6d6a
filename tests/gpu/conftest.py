"""The GPU tier: every entry point and option on CUDA with tiny settings (``make test-gpu``, README "GPU tier").

Every test here is marked ``gpu`` and needs CUDA; without it the whole tier is skipped at collection (CPU CI
stays green and fast). ``DDPM_TEST_DEVICE=cpu`` runs it on the CPU instead, to check a test's logic on a
machine without a GPU (slow: pick tests with -k).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.gpu import DEVICE, train


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = None
    if DEVICE == "cuda" and not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="GPU tier: no CUDA device (DDPM_TEST_DEVICE=cpu runs it on the CPU)")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)
            item.add_marker(pytest.mark.e2e)  # the tier runs the entry points (tests/helpers/run.py: require_e2e)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device(DEVICE)


@pytest.fixture(scope="session")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny Gaussian CNN run on the device (2 epochs), shared by the resume/sample/evaluate tests."""
    return train(tmp_path_factory.mktemp("gpu") / "run", "trainer.max_epochs=2")
