"""Config composition: the order of the defaults list decides who wins."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.config import compose_train


def _compose_with_experiment(tmp_path: Path, body: str, *overrides: str):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\n" + body)
    return compose_train(f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine", *overrides)


def test_an_experiment_wins_over_the_speed_preset(tmp_path: Path) -> None:
    cfg = _compose_with_experiment(tmp_path, "trainer:\n  precision: 16-mixed\ndata:\n  on_device: true\n")
    assert cfg.trainer.precision == "16-mixed" and cfg.data.on_device is True


def test_the_command_line_wins_over_both(tmp_path: Path) -> None:
    cfg = _compose_with_experiment(
        tmp_path, "trainer:\n  precision: 16-mixed\n", "trainer.precision=32-true", "speed=exact"
    )
    assert cfg.trainer.precision == "32-true"
