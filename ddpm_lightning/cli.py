"""Shared plumbing for the Hydra entry points: one clear line for bad input, failure markers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.quiet import quiet_library_noise
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


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run ``task(cfg)``. Bad input prints ``error: ...`` on one line and exits with status 2; any
    failure leaves a FAILED marker in the run directory. In a multirun the error is re-raised so that
    Hydra records this job as failed and goes on with the others."""
    try:
        return task(cfg)
    except Exception as exc:
        err = user_error(exc)
        message = str(err) if err is not None else f"{type(exc).__name__}: {exc}"
        out = _output_dir()
        if out is not None and out.is_dir():
            (out / FAILED_MARKER).write_text(message + "\n")
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


def _type_name(value: Any) -> str | None:
    for kind in (bool, int, float):
        if isinstance(value, kind):
            return kind.__name__
    return None


def check_overrides(argv: list[str], config_name: str, groups: tuple[str, ...]) -> None:
    """Reject bad command-line overrides in one line, before Hydra starts.

    - ``group=name`` whose ``conf/<group>/<name>.yaml`` does not exist (Hydra's own message spans
      several lines): names the bad choice and lists the valid ones;
    - an unknown key or a malformed override (Hydra's composition error, first line);
    - a value of the wrong type for a key whose default is a bool, int or float
      (e.g. ``trainer.max_epochs=abc``): Hydra configs here are untyped yaml, so the default's type
      is the schema.
    Sweeps (``-m`` with ``a,b`` values) are checked for group names only.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    flags = [a for a in argv[1:] if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return  # --help, --cfg job, -cn ...: Hydra handles these itself
    args = [a for a in argv[1:] if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as exc:
        _fail(f"bad override: {_one_line(exc)}")
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
        cfg = _compose(config_name, args)
    except Exception as exc:
        _fail(_one_line(exc))
    base = _compose(config_name, [a for a, o in zip(args, parsed) if o.key_or_group in groups])
    for o in parsed:
        if o.key_or_group in groups or o.is_delete():
            continue
        key = o.key_or_group
        expected = _type_name(OmegaConf.select(base, key, default=None, throw_on_resolution_failure=False))
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if expected is None or value is None:
            continue
        ok = {"bool": isinstance(value, bool), "int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool)}[expected]
        if not ok:
            _fail(f"{key} must be {expected}, got {value!r}")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


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
    quiet_library_noise()
    main()
