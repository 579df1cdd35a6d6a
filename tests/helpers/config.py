"""Compose the real config, as the entry points do, without running anything."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import ddpm_lightning.cli  # noqa: F401  (registers the configs' schemas and resolvers, as the entry points do)
from tests.helpers.run import REPO

CONF_DIR = REPO / "conf"


def compose_train(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, composed by Hydra (``return_hydra_config``: with the hydra node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)


def only_core_callbacks() -> list[str]:
    """``callbacks.<name>=null`` for the sample-quality metric callbacks (FID, KID, ...: minutes on CPU)
    in the composed default config, whatever it holds; checkpointing and sample grids stay on."""
    cfg = compose_train("paths.output_dir=.")
    return [
        f"callbacks.{name}=null"
        for name, node in (cfg.get("callbacks") or {}).items()
        if node is not None and "metric" in str(node.get("_target_", ""))
    ]
