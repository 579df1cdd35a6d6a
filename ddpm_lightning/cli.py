"""Shared plumbing for the Hydra entry points: one clear line for bad input, failure markers."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import ddpm_lightning.schema  # noqa: F401  (registers the configs' schemas with Hydra)
from ddpm_lightning.core.errors import DDPMError, RunInterrupted
from ddpm_lightning.quiet import quiet_library_noise
from ddpm_lightning.rundir import check_writable, remove_stub, resume_run_dir, sweep_jobs_not_run
from ddpm_lightning.speed import auto_option

log = logging.getLogger(__name__)
T = TypeVar("T")

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
FAILED_MARKER = "FAILED"


def resume_dir(ckpt_path: str | None, default: str) -> str:
    """The run directory a resumed run keeps writing to: ``<run>`` for ``<run>/checkpoints/x.ckpt``.

    Used as ``paths.output_dir: ${resume_dir:${ckpt_path},${hydra:runtime.output_dir}}`` so that a
    resumed run appends to the same TensorBoard run, checkpoints and sample grids.
    """
    if ckpt_path:
        p = Path(str(ckpt_path)).resolve()
        if p.parent.name == "checkpoints":
            return str(p.parent.parent)
    return default


if not OmegaConf.has_resolver("resume_dir"):
    OmegaConf.register_new_resolver("resume_dir", resume_dir)
if not OmegaConf.has_resolver("speed_auto"):  # conf/speed/auto.yaml: per-device speed defaults
    OmegaConf.register_new_resolver("speed_auto", auto_option)


def user_error(exc: BaseException) -> DDPMError | None:
    """The DDPMError behind ``exc`` (Hydra wraps errors raised while instantiating), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DDPMError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _output_dir() -> Path | None:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:
        return None


def _is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def _named_by_hydra() -> bool:
    """True if Hydra chose this single run's folder (no ``hydra.run.dir=`` override)."""
    try:
        return not any(o.startswith("hydra.run.dir=") for o in HydraConfig.get().overrides.hydra)
    except Exception:
        return False


def _interrupted(exc: BaseException) -> None:
    """An interrupted run (state saved) exits 128 + signal; a multirun also names the jobs it did not run."""
    assert isinstance(exc, RunInterrupted)
    print(f"error: {exc}; the run is incomplete, resume it with ckpt_path=<run>/checkpoints/last.ckpt", file=sys.stderr)
    if _is_multirun():
        num = int(HydraConfig.get().job.num)
        rest = sweep_jobs_not_run(sys.argv, num)
        listed = "; ".join(f"job {num + 1 + i}: {o}" for i, o in enumerate(rest)) if rest is not None else "unknown"
        print(f"error: sweep stopped at job {num}; jobs not run: {listed or 'none'}", file=sys.stderr)
    sys.exit(exc.code)


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run ``task(cfg)``. Bad input prints ``error: ...`` on one line and exits with status 2; any
    failure leaves a FAILED marker in the run directory, except that a single run's folder that Hydra
    named and that holds nothing but Hydra's files (the run failed at start-up) is removed. In a multirun
    the error is re-raised so that Hydra records this job as failed and goes on with the others.
    An interrupted run (SIGTERM, Ctrl-C) exits with 143 / 130, a multirun too (listing the jobs not run)."""
    try:
        return task(cfg)
    except RunInterrupted as exc:
        out = _output_dir()
        if out is not None and not exc.started and not _is_multirun() and _named_by_hydra():
            remove_stub(out)  # interrupted before training started: nothing to keep
        _interrupted(exc)
        raise  # unreachable: _interrupted exits
    except Exception as exc:
        err = user_error(exc)
        message = str(err) if err is not None else f"{type(exc).__name__}: {exc}"
        out = _output_dir()
        started = getattr(exc, "training_started", False)  # set by lit.startup.run_fit
        if out is not None and not started and not _is_multirun() and _named_by_hydra() and remove_stub(out):
            out = None  # failed before writing anything: the folder is gone, the error is on the terminal
        if out is not None and out.is_dir():
            (out / FAILED_MARKER).write_text(message + "\n")
        run_dir = OmegaConf.select(cfg, "paths.output_dir", default=None, throw_on_resolution_failure=False)
        if started and run_dir and Path(run_dir) != out and Path(run_dir).is_dir():  # a resume failed: mark the run
            (Path(run_dir) / FAILED_MARKER).write_text(message + "\n")
        if err is None or _is_multirun():
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines[:2] if not ln.startswith(("full_key", "object_type"))]
    return " ".join(keep) or type(exc).__name__


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


_CONVERTED = re.compile(r"Value '(.*)' (?:of type '\w+' could not be converted to (\w+)|is not a valid (\w+))")
_TYPE_NAMES = {"Integer": "int", "Float": "float", "Boolean": "bool", "bool": "bool", "String": "str"}


def _schema_error(exc: BaseException, parsed: list[Any]) -> str | None:
    """``<key> must be <type>, got <value>`` for a value a schema (ddpm_lightning/schema.py) refused, if so."""
    from omegaconf.errors import ValidationError

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ValidationError):
        cause = cause.__cause__
    match = _CONVERTED.match(str(cause)) if cause is not None else None
    if cause is None or match is None:
        return None
    key = str(getattr(cause, "full_key", "") or "")
    values = [o.value() for o in parsed if o.key_or_group == key]
    value = values[-1] if values else match.group(1)
    kind = _TYPE_NAMES.get(match.group(2) or match.group(3), match.group(2) or match.group(3))
    return f"{key} must be {kind}, got {value!r}"


def check_overrides(argv: list[str], config_name: str, groups: tuple[str, ...]) -> None:
    """Reject bad command-line overrides in one line, before Hydra starts (and before torch loads).

    - ``group=name`` whose ``conf/<group>/<name>.yaml`` does not exist (Hydra's own message spans
      several lines): names the bad choice and lists the valid ones;
    - the config is composed once, so Hydra and the schemas (ddpm_lightning/schema.py) check the rest:
      a value of the wrong type (``trainer.max_epochs=abc``: ``<key> must be int, got 'abc'``), an
      unknown key or a malformed override (Hydra's error, first line).
    Sweeps (``-m`` with ``a,b`` values) are checked for group names only: each job is composed when it starts.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    flags = [a for a in argv[1:] if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return  # --help, --cfg job, -cn ...: Hydra handles these itself
    args = [a for a in argv[1:] if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as exc:
        hint = (
            "; quote values with spaces or non-ASCII characters: 'key=value'"
            if not all(a.isascii() for a in args)
            else ""
        )
        _fail(f"bad override: {_one_line(exc)}{hint}")
    for o in parsed:
        if o.key_or_group in groups and o.value_type is not None:
            values = o.value()
            names = [values] if isinstance(values, str) else list(getattr(values, "list", []) or [])
            choices = sorted(p.stem for p in (CONF_DIR / o.key_or_group).glob("*.yaml"))
            for name in names:
                if isinstance(name, str) and name != "null" and name not in choices:
                    _fail(f"unknown {o.key_or_group} '{name}'; valid choices: {', '.join(choices)}")
    if flags or any(o.is_sweep_override() for o in parsed):
        return  # a multirun: each job's values are checked when it starts
    try:
        _compose(config_name, args)
    except Exception as exc:
        _fail(_schema_error(exc, parsed) or _one_line(exc))


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_output_dir(argv: list[str], task_name: str) -> None:
    """Refuse an output folder that cannot be written in one line, before Hydra tries to create it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv[1:]):
        return
    multirun = any(a in ("-m", "--multirun") for a in argv[1:])
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    parsed = OverridesParser.create().parse_overrides([a for a in argv[1:] if not a.startswith("-")])
    given = [str(o.value()) for o in parsed if o.key_or_group == key and not o.is_sweep_override()]
    where = given[-1] if given else os.path.join(os.environ.get("DDPM_ROOT", "."), "outputs", task_name)
    ckpt = [str(o.value()) for o in parsed if o.key_or_group == "ckpt_path" and not o.is_sweep_override()]
    if task_name == "train" and ckpt and not given and not multirun:  # a resume writes into its run (conf/train.yaml)
        where = resume_run_dir(ckpt[-1], where)
    check_writable(where, "output directory", f"choose a writable one with {key}=<dir> (or DDPM_ROOT=<dir>)")


_checked: list[str] = []


def check_argv(config_name: str, groups: tuple[str, ...]) -> None:
    """Validate the command-line overrides once; an entry point calls this before its heavy imports
    (torch, Lightning: seconds to tens of seconds on a busy machine), so a typo fails at once."""
    if config_name not in _checked:
        check_overrides(sys.argv, config_name, groups)
        _checked.append(config_name)


def entry(main: Callable[[], Any], groups: tuple[str, ...], config_name: str) -> None:
    """Console entry: validate the command-line overrides, then hand over to the Hydra ``main``."""
    check_argv(config_name, groups)
    try:
        check_output_dir(sys.argv, config_name)
    except DDPMError as e:
        _fail(str(e))
    quiet_library_noise()
    main()
