"""GPU tier, the classifier behind val/fid_mnist: the whole `python -m ddpm_lightning.classifier` training
(3 epochs; minutes on 2 CPU cores, seconds on a GPU) reaches the 99 % test accuracy the packaged weights have.

On the CPU suite, tests/test_classifier.py checks the packaged weights' accuracy and the command's plumbing
(2 steps); this is the check that the command itself reproduces them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.gpu import DEVICE
from tests.helpers.run import run_cli


def test_cli_training_reaches_99_percent(tmp_path: Path) -> None:
    out = tmp_path / "c.pt"
    proc = run_cli(
        "ddpm_lightning.classifier",
        f"output={out}",
        f"device={DEVICE}",
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "classifier.json").read_text())["test_accuracy"] >= 0.99
