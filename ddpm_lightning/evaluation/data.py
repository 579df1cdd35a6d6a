"""MNIST's IDX files as tensors, pure torch: the real images of the metrics and the classifier's data.

The root follows torchvision's layout ``<root>/MNIST/raw/*-idx?-ubyte``; pixels are scaled from [0, 255] to
[−1, 1] (x/127.5 − 1). The training data module (``lit/data.py``) reads through ``load_mnist`` too.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import Tensor

from ddpm_lightning.core.errors import DDPMError

# IDX magic numbers: 0x00000803 = unsigned byte, 3 dims (images); 0x00000801 = 1 dim (labels).
_MAGIC = {"images": 2051, "labels": 2049}
_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path, kind: str) -> Tensor:
    """Read one uncompressed IDX file, checking its magic number and its length against its header."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DDPMError(f"cannot read MNIST file {path}: {e.strerror or e}") from None
    if len(data) < 8:
        raise DDPMError(f"MNIST file {path} is truncated ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != _MAGIC[kind]:
        raise DDPMError(f"MNIST file {path} has magic number {magic}, expected {_MAGIC[kind]} for {kind}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(torch.tensor(dims, device="cpu").prod())
    if len(data) != expected:
        raise DDPMError(
            f"MNIST file {path} has {len(data)} bytes, its header {dims} says {expected}: truncated or corrupt"
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(*dims)


def full_cause(exc: BaseException) -> str:
    """``exc`` and the errors behind it on one line: torchvision's download error puts the reason (the
    URLs tried, the network error) on its later lines and in its cause."""
    parts, seen = [], exc
    while seen is not None and len(parts) < 5:
        text = " ".join(ln.strip() for ln in str(seen).splitlines() if ln.strip())
        parts.append(f"{type(seen).__name__}: {text}" if text else type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    return "; caused by ".join(parts)


ROOT_HINT = "set DDPM_DATA_DIR or data.root"  # the training config's keys; evaluate names its own (data_root)


def find_mnist(
    root: str | os.PathLike, split: str, download: bool = False, hint: str = ROOT_HINT + ", or data.download=true"
) -> Path:
    """The ``MNIST/raw`` folder under ``root`` holding ``split``'s two files (downloaded first when missing and
    ``download``); a one-line error otherwise, ending with ``hint`` (how the caller's config points at the data)."""
    raw = Path(root) / "MNIST" / "raw"
    # exists(), not is_file(): a present but unreadable entry is reported as such by read_idx
    missing = [name for (s, _), name in _FILES.items() if s == split and not (raw / name).exists()]
    if missing and download:
        try:
            from torchvision.datasets import MNIST

            MNIST(str(root), train=split == "train", download=True)
        except Exception as e:  # no network, permission, ...
            raise DDPMError(
                f"MNIST not found in {raw} and the download failed ({full_cause(e)}); "
                f"{ROOT_HINT} to a folder holding MNIST/raw/"
            ) from None
    elif missing:
        raise DDPMError(f"MNIST files missing in {raw}: {missing}; {hint}")
    return raw


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)  # read_idx reports it
    return (st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_split(raw: Path, split: str, stamps: tuple[tuple[int, int], ...]) -> tuple[Tensor, Tensor]:
    """(images (N, 28, 28) uint8, labels (N,) uint8), read once per process and file version (``stamps``: size
    and mtime of both files): a run reads the same split for its data, its metrics and their floors."""
    images = read_idx(raw / _FILES[(split, "images")], "images")  # (N, 28, 28) uint8
    labels = read_idx(raw / _FILES[(split, "labels")], "labels")  # (N,) uint8
    if images.shape[0] != labels.shape[0]:
        raise DDPMError(f"MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels in {raw}")
    return images, labels


def load_mnist(
    root: str | os.PathLike,
    split: str,
    download: bool = False,
    hint: str = ROOT_HINT + ", or data.download=true",
    n: int | None = None,
) -> tuple[Tensor, Tensor]:
    """(images (N, 1, 28, 28) float in [−1, 1], labels (N,) long) for split 'train' or 'test'; ``n``: only the
    first n (None: all). ``hint``: how the caller's config points at the data (the end of the missing-files
    error)."""
    raw = find_mnist(root, split, download, hint)
    stamps = tuple(_stamp(raw / _FILES[(split, kind)]) for kind in ("images", "labels"))
    images, labels = _read_split(raw.resolve(), split, stamps)
    x = images[:n].unsqueeze(1).float() / 127.5 - 1.0  # (n, 1, 28, 28) in [−1, 1]: a new tensor, the cache stays
    return x, labels[:n].long()
