"""Host synchronisations per training step: the real run's trainer, callbacks and logger, each step's
device→host value reads counted (``ddpm_lightning.lit.host_syncs``; on a GPU each read stalls the queue)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate

from ddpm_lightning.build import build_module
from ddpm_lightning.lit.host_syncs import CountHostSyncs


def count_training_syncs(
    cfg: Any, steps: int, extra_callbacks: list[pl.Callback] | None = None, skip: tuple[str, ...] = ()
) -> CountHostSyncs:
    """``steps`` training steps of the run ``cfg`` (a composed train config: its module, data, trainer, logger
    and callbacks but those named in ``skip``; no validation), with the reads of each step counted."""
    counter = CountHostSyncs()
    callbacks = [instantiate(c) for k, c in (cfg.callbacks or {}).items() if c is not None and k not in skip]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c is not None]
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, *(extra_callbacks or []), counter],
        logger=loggers or False,
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(build_module(cfg), datamodule=instantiate(cfg.data))
    return counter


def host_syncs(device: Any, steps: int, workdir: str, overrides: list[str]) -> dict[str, Any]:
    """Reads per training step of the device's preset run (the per-epoch evaluation callbacks left out: they
    act at validation end, not in a training step): ``summary`` of ``CountHostSyncs``, plus the setup."""
    import contextlib
    import os

    from benchmarks.common import EVAL_CALLBACKS, compose_train, speed_overrides

    cfg = compose_train([*speed_overrides(device), *overrides], workdir)
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        counter = count_training_syncs(cfg, steps, skip=EVAL_CALLBACKS)
    return {
        **counter.summary(),
        "precision": str(cfg.trainer.precision),
        "batch": int(cfg.data.batch_size),
        "how": "device->host value reads (item, bool, float, tolist, numpy, mask index, .cpu()) per training step, "
        "from one on_train_batch_start to the next; steady: steps that neither log, redraw the progress bar "
        "nor end the epoch",
    }
