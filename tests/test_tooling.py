"""Test tooling: the debug configs shrink a run as the old override lists did; entry points only in e2e tests."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.helpers.config import compose_train
from tests.helpers.run import run_cli

# The tiny-run override lists the debug configs replace (tests/conftest.py, tests/test_report.py, tests/gpu/conftest.py,
# the Makefile's SMOKE_ARGS), each checked to compose to the same config as its debug config.
OLD_TINY = [
    "T=20",
    "trainer.max_epochs=1",
    "data.train_subset=256",
    "data.val_subset=64",
    "data.batch_size=32",
    "+trainer.limit_train_batches=2",
    "trainer.log_every_n_steps=1",
    "callbacks.sample_grid.n=4",
    "callbacks.generative_metrics.n=8",
    "callbacks.generative_metrics.psnr_references=8",
    "callbacks.denoising_metrics.n=8",
]
OLD_QUIET = [
    "T=20",
    "trainer.max_epochs=1",
    "data.train_subset=256",
    "data.val_subset=64",
    "data.batch_size=32",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.sample_grid.n=4",
    "callbacks.progress_bar=null",
    "+trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.generative_metrics.n=8",
    "callbacks.generative_metrics.psnr_references=8",
    "callbacks.denoising_metrics.n=8",
]
OLD_SMOKE = [
    "trainer.accelerator=cpu",
    "T=10",
    "trainer.max_epochs=2",
    "data.train_subset=256",
    "data.val_subset=32",
    "data.batch_size=16",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.sample_grid.n=4",
    "callbacks.generative_metrics.n=16",
    "callbacks.generative_metrics.every_n_epochs=2",
    "callbacks.generative_metrics.psnr_references=8",
    "callbacks.generative_metrics.kid_subsets=10",
    "callbacks.generative_metrics.kid_subset_size=8",
    "callbacks.denoising_metrics.n=8",
]


def _container(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_train(*overrides), resolve=False)


@pytest.mark.parametrize(
    "extra",
    [
        (),
        ("callbacks=[ema,metrics]",),
        ("degradation=blur",),
        ("experiment=study_des",),
        ("trainer.max_epochs=2", "data.batch_size=8"),
    ],
)
def test_debug_tiny_is_the_old_tiny_overrides(extra: tuple[str, ...]) -> None:
    """+debug=tiny wins over groups and experiments; the command line wins over it."""
    assert _container("+debug=tiny", *extra) == _container(*OLD_TINY, *extra)


def test_debug_quiet_and_smoke_are_the_old_overrides() -> None:
    assert _container("+debug=quiet") == _container(*OLD_QUIET)
    # a study sweep job: the sweeper puts `+experiment@_global_` before the command line, so debug still wins
    job = ("+experiment@_global_=study_large", "experiment=study")
    assert _container(*job, "+debug=smoke") == _container(*job, *OLD_SMOKE)


def test_entry_points_run_only_in_e2e_tests() -> None:
    with pytest.raises(AssertionError, match="must be marked @pytest.mark.e2e"):
        run_cli("ddpm_lightning.train", "--help")
