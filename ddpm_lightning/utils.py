"""Small helpers used across the layers above core (no Lightning, no Hydra): atomic file writes, the first line
of an exception for one-line errors, the default device."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a device is chosen: rundir (and the override check) stays torch-free
    import torch


def tmp_path_for(path: Path) -> Path:
    """``.<name>.tmp-<pid>`` beside ``path``: where ``atomic_open`` writes (lit/resilience.py removes the ones a
    SIGKILL left, by this pattern)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit flush, fsync and rename it onto ``path``
    (atomic on POSIX: a reader, or a kill, sees the old file or the new one, never half of it). On an error the
    temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (the type's name if it has none): the cause in a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or for ``None``/``"auto"`` the GPU if torch sees one, else the CPU."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
