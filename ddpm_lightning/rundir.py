"""What a run leaves in its directory, whatever happens to it.

- a resume (``ckpt_path=<run>/checkpoints/x.ckpt``) writes into ``<run>``; Hydra's own files of the resume
  (``.hydra/``, ``train.log``) go to ``<run>/resumes/<time>/``, not to a stub run folder under ``outputs/``;
- a single run that fails before training started removes the folder Hydra named for it (the error is on
  the terminal); a folder named by the user (``hydra.run.dir=...``) and every job of a multirun keep it,
  with a ``FAILED`` marker that the report lists;
- ``metrics.yaml`` is written atomically (temporary file, fsync, rename);
- output locations are checked for writability before any work.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.utils import atomic_open

RESUMES = "resumes"  # <run>/resumes/<time>/: Hydra's files of each resume of <run>
STUB_ENTRIES = {".hydra", "train.log", "sample.log", "evaluate.log", "classifier.log", "FAILED"}


def resume_run_dir(ckpt_path: str | None, default: str) -> str:
    """Hydra's run dir for train: ``<run>/resumes/<time>`` for ``ckpt_path=<run>/checkpoints/x.ckpt``,
    else ``default``."""
    if ckpt_path:
        p = Path(str(ckpt_path)).resolve()
        if p.parent.name == "checkpoints" and p.parent.parent.is_dir():
            return str(p.parent.parent / RESUMES / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f"))
    return default


if not OmegaConf.has_resolver("resume_run_dir"):
    OmegaConf.register_new_resolver("resume_run_dir", resume_run_dir)


def write_yaml_atomic(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write ``data`` as YAML so that a reader (or a kill) sees the old file or the new one, never half of it."""
    with atomic_open(path, "w") as f:
        f.write(OmegaConf.to_yaml(data))


def check_writable(path: str | os.PathLike, what: str, hint: str) -> None:
    """Raise a one-line DDPMError if ``path`` (a file or folder, existing or not) cannot be written."""
    p = Path(os.path.abspath(path))
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == p and p.is_file():
        ok, why = os.access(p, os.W_OK), "read-only"
    elif not existing.is_dir():
        ok, why = False, f"{existing} is not a directory"
    else:
        ok, why = os.access(existing, os.W_OK | os.X_OK), f"{existing} is read-only"
    if not ok:
        raise DDPMError(f"{what} {path} is not writable ({why}); {hint}")


def is_stub(out: Path) -> bool:
    """A run folder holding nothing but Hydra's files: the run failed before it wrote anything of its own."""
    return out.is_dir() and all(p.name in STUB_ENTRIES for p in out.iterdir())


def remove_stub(out: Path) -> bool:
    """Remove a stub run folder Hydra named, and its parent (``<date>/`` or ``<run>/resumes/``) if now empty."""
    if not is_stub(out):
        return False
    shutil.rmtree(out, ignore_errors=True)
    if out.parent.is_dir() and not any(out.parent.iterdir()):
        out.parent.rmdir()
    return True


def sweep_jobs_not_run(argv: list[str], job_num: int) -> list[str] | None:
    """The overrides of the jobs after ``job_num`` of a basic-sweeper multirun started with ``argv``;
    None if unknown."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([a for a in argv[1:] if not a.startswith("-")])
        jobs = BasicSweeper.split_arguments(parsed, None)[0]
    except Exception:
        return None
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    return [" ".join(o for o in job if o.split("=", 1)[0] in swept) for job in jobs[job_num + 1 :]]
