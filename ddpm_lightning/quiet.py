"""Silence library messages that are not the user's business, at their source (no global ``ignore``).

- Lightning's "💡 Tip: ... litlogger" advertisement (an INFO line on every run);
- "Precision bf16-mixed is not supported by the model summary" (the trainer config turns the model
  summary off anyway: its FLOPs column reads 0 for this module; the run's start lines give the parameters);
- torch's "`isinstance(treespec, LeafSpec)` is deprecated" FutureWarning, raised inside Lightning's own
  pytree code (printed into the sanity-check bar), not by ours.
Other warnings still show. Imports nothing heavy: called by ``cli.entry`` before Hydra starts.
"""

from __future__ import annotations

import logging
import warnings

_LIGHTNING_TIP = "💡 Tip:"


class _DropTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_LIGHTNING_TIP)


def quiet_library_noise() -> None:
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    warnings.filterwarnings(
        "ignore", message=r"Precision .* is not supported by the model summary", category=UserWarning
    )
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTip) for f in logger.filters):
            logger.addFilter(_DropTip())
