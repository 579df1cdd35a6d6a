"""Shared plumbing for the Hydra entry points: one clear line for bad input, failure markers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ddpm_lightning.core.errors import DDPMError

log = logging.getLogger(__name__)
T = TypeVar("T")

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
FAILED_MARKER = "FAILED"


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


def check_group_choices(argv: list[str], groups: tuple[str, ...]) -> None:
    """Reject ``group=name`` overrides whose ``conf/<group>/<name>.yaml`` does not exist, in one line,
    before Hydra starts (Hydra's own message spans several lines)."""
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in groups or value in ("", "null"):
            continue
        if value.startswith(("choice(", "range(", "glob(", "interval(", "tag(")):
            continue
        choices = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
        for name in value.split(","):
            if name not in choices:
                print(f"error: unknown {key} '{name}'; valid choices: {', '.join(choices)}", file=sys.stderr)
                sys.exit(2)


def entry(main: Callable[[], Any], groups: tuple[str, ...]) -> None:
    """Console entry: validate group choices, then hand over to the Hydra-decorated ``main``."""
    check_group_choices(sys.argv, groups)
    main()
