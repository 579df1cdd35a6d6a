"""One training run as the report sees it: config, overrides, final metrics, logged scalars, sample grids.

A run directory is what ``python -m ddpm_lightning.train`` writes (one per job of a multirun):
``.hydra/{config,hydra,overrides}.yaml``, ``metrics.yaml`` (final callback metrics, parameter count,
training time), ``tensorboard/<overrides>/events.out.tfevents.*`` (older runs: in ``tensorboard/``),
``samples/epoch_XXX.png`` and, when the job failed, a ``FAILED`` file holding the error (written by ``cli.run_task``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.cli import FAILED_MARKER
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.utils import first_line

SAMPLE_RE = re.compile(r"epoch_(\d+)\.png$")
SKIP_DIRS = {".hydra", ".submitit", "checkpoints", "samples", "tensorboard", "__pycache__"}

Series = tuple[list[int], list[float]]  # (epochs, values)
# the step -> epoch scalar: lit/tensorboard.py writes Lightning's `epoch` as `xaxis/epoch` (sorted last in TensorBoard)
EPOCH_TAGS = ("xaxis/epoch", "epoch")


@dataclass
class Run:
    path: Path
    name: str  # path relative to the report root ("0", "1", ... in a sweep)
    config: DictConfig
    overrides: list[str]
    choices: dict[str, str]  # config group -> chosen option (hydra.runtime.choices)
    status: str  # "ok" | "failed" | "incomplete"
    error: str = ""
    final: dict[str, float] = field(default_factory=dict)  # metrics.yaml
    scalars: dict[str, Series] = field(default_factory=dict)  # TensorBoard tag -> per-epoch values
    samples: dict[int, Path] = field(default_factory=dict)  # epoch -> grid PNG

    def value(self, key: str) -> float | None:
        """Final value of ``key``: metrics.yaml, else the last logged scalar; None for failed runs."""
        if self.status == "failed":
            return None
        if key in self.final:
            return self.final[key]
        series = self.scalars.get(key)
        return series[1][-1] if series and series[1] else None

    def series(self, key: str) -> Series | None:
        """Per-epoch values of ``key``; epoch-level training losses are logged as ``<key>_epoch``."""
        return self.scalars.get(key) or self.scalars.get(f"{key}_epoch")


def _natural_key(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def find_runs(root: Path) -> list[Path]:
    """Run directories (those holding ``.hydra/config.yaml``) at or under ``root``, naturally sorted."""
    if (root / ".hydra" / "config.yaml").is_file():
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if (here / ".hydra" / "config.yaml").is_file():
            found.append(here)
            dirnames[:] = []  # a run holds no runs
            continue
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
    return sorted(found, key=lambda p: _natural_key(str(p.relative_to(root))))


def event_dir(tb_root: Path) -> Path:
    """The folder holding a run's events: its one TensorBoard run under ``<run>/tensorboard`` (named by the
    overrides), or ``tb_root`` itself (older runs)."""
    if any(tb_root.glob("events.out.tfevents.*")):
        return tb_root
    found = sorted({p.parent for p in tb_root.glob("*/events.out.tfevents.*")})
    return found[0] if found else tb_root


def read_scalars(tb_dir: Path) -> dict[str, Series]:
    """Every scalar tag of the TensorBoard event files in ``tb_dir`` (or its run folder), indexed by epoch.

    Lightning writes an ``epoch`` scalar (``xaxis/epoch`` here) next to every logged dict, at the same step.
    A step can carry two epochs (the last batch of one epoch and the epoch-end metrics share it with the next); the
    smaller one is the epoch whose end logged the value.
    """
    tb_dir = event_dir(tb_dir)
    if not tb_dir.is_dir() or not any(tb_dir.glob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guidance = {"scalars": 0, "images": 1, "tensors": 1, "histograms": 1, "audio": 1, "compressedHistograms": 1}
    acc = EventAccumulator(str(tb_dir), size_guidance=guidance)
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    step_epoch: dict[int, int] = {}
    for epoch_tag in [t for t in EPOCH_TAGS if t in tags]:
        for ev in acc.Scalars(epoch_tag):
            step_epoch[ev.step] = min(step_epoch.get(ev.step, int(ev.value)), int(ev.value))
    out: dict[str, Series] = {}
    for tag in tags:
        if tag in EPOCH_TAGS:
            continue
        by_epoch: dict[int, float] = {}
        for i, ev in enumerate(acc.Scalars(tag)):
            by_epoch[step_epoch.get(ev.step, i)] = float(ev.value)  # a resumed run's rewrite wins
        epochs = sorted(by_epoch)
        out[tag] = (epochs, [by_epoch[e] for e in epochs])
    return out


def _load_yaml(path: Path) -> Any:
    try:
        return OmegaConf.load(path)
    except Exception as e:
        raise DDPMError(f"cannot read {path}: {type(e).__name__}: {first_line(e) if str(e).strip() else ''}") from None


def read_run(path: Path, root: Path) -> Run:
    """Everything the report needs from one run directory."""
    config = _load_yaml(path / ".hydra" / "config.yaml")
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in _load_yaml(overrides_file)] if overrides_file.is_file() else []
    choices: dict[str, str] = {}
    hydra_file = path / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        node = OmegaConf.select(_load_yaml(hydra_file), "hydra.runtime.choices")
        if node is not None:
            choices = {str(k): str(v) for k, v in OmegaConf.to_container(node, resolve=False).items()}  # type: ignore[union-attr]

    failed = path / FAILED_MARKER
    metrics_file = path / "metrics.yaml"
    final: dict[str, float] = {}
    if failed.is_file():
        text = failed.read_text().strip()
        status, error = "failed", " ".join(line.strip() for line in text.splitlines()) or "(empty FAILED marker)"
    elif metrics_file.is_file():
        status, error = "ok", ""
        try:  # a corrupt metrics.yaml marks this run, not the whole report
            raw = OmegaConf.to_container(_load_yaml(metrics_file)) or {}
            if not isinstance(raw, dict):
                raise DDPMError(f"cannot read {metrics_file}: not a mapping of metric names to values")
        except DDPMError as e:
            raw, status, error = {}, "failed", str(e)
        final = {str(k): float(v) for k, v in raw.items() if isinstance(v, (int, float))}  # type: ignore[union-attr]
        if str(raw.get("status", "")).startswith("interrupted"):  # SIGTERM / Ctrl-C: resumable, not finished
            status, error = "incomplete", f"{raw['status']} (resume it from checkpoints/last.ckpt)"
    else:
        status, error = "incomplete", "no metrics.yaml and no FAILED marker (still running, or killed)"

    samples = {}
    for png in (path / "samples").glob("epoch_*.png"):
        m = SAMPLE_RE.search(png.name)
        if m:
            samples[int(m.group(1))] = png
    name = str(path.relative_to(root)) if path != root else path.name
    return Run(
        path=path,
        name=name,
        config=config,
        overrides=overrides,
        choices=choices,
        status=status,
        error=error,
        final=final,
        scalars=read_scalars(path / "tensorboard"),
        samples=dict(sorted(samples.items())),
    )


def read_runs(root: str | os.PathLike) -> list[Run]:
    """All runs at or under ``root`` (a run, a sweep, or a folder of runs)."""
    root = Path(root)
    if not root.is_dir():
        raise DDPMError(
            f"not a directory: {root} (give a run directory, a multirun sweep directory or a folder of runs)"
        )
    paths = find_runs(root)
    if not paths:
        raise DDPMError(f"no runs under {root}: no */.hydra/config.yaml found (is this a training output directory?)")
    runs = []
    for p in paths:
        try:
            runs.append(read_run(p, root))
        except DDPMError as e:  # an unreadable run file: that run is marked failed, the report goes on
            name = str(p.relative_to(root)) if p != root else p.name
            runs.append(
                Run(
                    path=p,
                    name=name,
                    config=OmegaConf.create({}),
                    overrides=[],
                    choices={},
                    status="failed",
                    error=str(e),
                )
            )
    return runs


def _simplify(override: str) -> str:
    """``+experiment@_global_=study_des`` -> ``experiment=study_des``."""
    key, sep, value = override.partition("=")
    return f"{key.lstrip('+~').replace('@_global_', '')}{sep}{value}"


def varying_overrides(runs: list[Run]) -> dict[str, list[str]]:
    """Per run name, its overrides that not every run shares (what tells the runs apart)."""
    sets = [set(r.overrides) for r in runs]
    common = set.intersection(*sets) if len(runs) > 1 else set()
    return {r.name: [_simplify(o) for o in r.overrides if o not in common] for r in runs}


def nearest_epoch(available: list[int], wanted: int) -> int | None:
    """The available epoch closest to ``wanted`` (the earlier one on a tie); None if there is none."""
    if not available:
        return None
    return min(available, key=lambda e: (abs(e - wanted), e))
