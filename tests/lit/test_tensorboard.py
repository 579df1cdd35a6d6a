"""The run's TensorBoard logger: runs named by their overrides (a resumed run keeps its folder), the epoch
scalar sorted after the metrics, and the report reading both layouts."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddpm_lightning.lit.hparams import run_params
from ddpm_lightning.lit.tensorboard import EPOCH_TAG, RunTensorBoardLogger, overrides_name, run_version
from ddpm_lightning.reporting.runs import event_dir, read_scalars


def test_a_run_is_named_by_its_overrides_sanitized_for_paths() -> None:
    assert overrides_name(["schedule=geometric", "capacity=large"]) == "schedule=geometric,capacity=large"
    assert overrides_name([]) == "default"
    assert overrides_name(["ckpt_path=/a/b.ckpt", "hydra.run.dir=/x", "paths.output_dir=/y"]) == "default"
    assert (
        overrides_name(["+experiment@_global_=study_des", "data.root=/a b/c"])
        == "experiment=study_des,data.root=_a_b_c"
    )
    long = overrides_name([f"k{i}=v" for i in range(100)])
    assert len(long) == 120 and long != overrides_name([f"k{i}=v" for i in range(101)])  # a hash keeps them apart


def test_a_resumed_run_keeps_its_tensorboard_run(tmp_path: Path) -> None:
    root = tmp_path / "tensorboard"
    assert run_version(root, ["seed=1"]) == "seed=1"
    (root / "seed=1").mkdir(parents=True)
    (root / "seed=1" / "events.out.tfevents.1").touch()
    assert run_version(root, ["trainer.max_epochs=3"]) == "seed=1"  # the resume's command line differs
    old = tmp_path / "old"
    old.mkdir()
    (old / "events.out.tfevents.1").touch()
    assert run_version(old, ["seed=1"]) == ""  # a run from before: its events in tensorboard/ itself


def test_epoch_is_logged_after_the_metrics_and_the_report_reads_it(tmp_path: Path) -> None:
    logger = RunTensorBoardLogger(tmp_path, overrides=["+debug=tiny", "schedule=geometric"])
    for epoch, step in ((0, 1), (1, 3)):
        logger.log_metrics({"val/loss": 1.0 / (epoch + 1), "epoch": epoch}, step)  # what Lightning logs
    logger.finalize("success")
    assert Path(logger.log_dir) == tmp_path / "tensorboard" / "debug=tiny,schedule=geometric"
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"val/loss", EPOCH_TAG}  # old code: `epoch`, sorted before train/ and val/
    assert EPOCH_TAG > "walltime/" > "val/"  # tag groups sort alphabetically: metrics first, costs, then epoch
    assert event_dir(tmp_path / "tensorboard") == Path(logger.log_dir)
    assert read_scalars(tmp_path / "tensorboard") == {"val/loss": ([0, 1], [1.0, 0.5])}


def test_hparams_are_the_overrides_the_entry_point_passes_in() -> None:
    choices = {"schedule": "geometric", "capacity": "small", "experiment": None, "hydra/launcher": "basic"}
    overrides = ["schedule=geometric", "trainer.max_epochs=2", "hydra.run.dir=/x", "ckpt_path=/y.ckpt"]
    assert run_params(overrides, choices) == {"schedule": "geometric", "capacity": "small", "trainer.max_epochs": 2}
    assert run_params(overrides, choices, all_choices=False) == {"schedule": "geometric", "trainer.max_epochs": 2}
