"""ddpm_lightning/utils.py: atomic writes, the first line of an exception, the default device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddpm_lightning.utils import atomic_open, first_line, pick_device


def test_atomic_open_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(path, "w") as f:
        f.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["f.yaml"]
    with atomic_open(path, "w") as f:
        f.write("new\n")
    assert path.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["f.yaml"]


def test_first_line_and_pick_device() -> None:
    assert first_line(ValueError("\n  bad value\nmore detail")) == "bad value"
    assert first_line(KeyError()) == "KeyError"
    assert pick_device("cpu") == torch.device("cpu") and pick_device(torch.device("meta")).type == "meta"
    assert pick_device().type == pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
