"""The MNIST download error carries its whole cause on one line (torchvision puts it on later lines)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torchvision.datasets

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.data import load_mnist


def test_download_error_names_its_full_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        try:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        except urllib.error.URLError as e:
            raise RuntimeError(
                f"Error downloading train-images-idx3-ubyte.gz:\nTried https://example/mnist, got:\n{e}"
            ) from e

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_network)
    with pytest.raises(DDPMError) as info:
        load_mnist(tmp_path, "train", download=True)
    msg = str(info.value)
    assert "\n" not in msg and "Tried https://example/mnist" in msg and "Temporary failure in name resolution" in msg
    assert "caused by URLError" in msg and msg.endswith("set DDPM_DATA_DIR or data.root to a folder holding MNIST/raw/")
