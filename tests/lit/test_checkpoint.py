"""The ``module`` config node is the LightningModule; checkpoints store it; resuming compares it minus runtime keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ddpm_lightning.build import build_module, load_module
from ddpm_lightning.cli import _compose
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.checkpoint import RUNTIME_KEYS, check_compatible, read_checkpoint
from ddpm_lightning.lit.module import CONFIG_KEY, DiffusionModule
from tests.helpers.run import TINY


def test_module_node_is_the_lightning_module_with_the_user_groups() -> None:
    cfg = _compose(
        "train",
        [
            "T=20",
            "schedule=geometric",
            "model=unet",
            "capacity.channels=[8,16]",
            "degradation=des",
            "degradation.temperature=2",
            "sampler=ddim",
            "sampler.num_steps=5",
            "optimizer.lr=1e-3",
            "module.check_finite=false",
        ],
    )
    build_module(cfg)
    assert cfg.schedule._get_node("T")._value() == "${T}"  # build_module does not resolve the caller's config in place
    module = instantiate(cfg.module)
    assert isinstance(module, DiffusionModule) and not module.check_finite
    assert type(module.network).__name__ == "UNet" and module.schedule.T == 20
    assert type(module.degradation).__name__ == "EntropyScaled" and module.degradation.temperature == 2
    assert type(module.make_sampler()).__name__ == "DDIM"
    assert module.configure_optimizers().defaults["lr"] == 1e-3


def test_generate_uses_the_image_shape_argument() -> None:
    cfg = _compose("train", ["T=20", "capacity.channels=[4]", "model.image_size=16", "module.image_shape=[1,16,16]"])
    assert build_module(cfg).generate(2, seed=0).shape == (2, 1, 16, 16)


@pytest.mark.e2e  # trained_run: a training through the entry point
def test_resume_check_ignores_runtime_keys_and_names_user_keys(trained_run: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    assert set(RUNTIME_KEYS) >= {"compile", "channels_last", "sample_precision", "check_finite", "optimizer"}
    runtime = [
        "module.compile=true",
        "module.channels_last=true",
        "module.sample_precision=32-true",
        "module.check_finite=false",
        "optimizer.lr=1e-3",
        "sampler=ddim",
    ]
    check_compatible(ckpt, _compose("train", [*TINY, *runtime]).module)  # what resume applies: fine
    with pytest.raises(DDPMError, match=r"different model config: T=20 \(now 30\)$"):
        check_compatible(ckpt, _compose("train", [*TINY, "T=30"]).module)
    with pytest.raises(DDPMError, match=r"capacity.channels=\[16, 32, 32, 16\] \(now \[8\]\)"):
        check_compatible(ckpt, _compose("train", [*TINY, "capacity.channels=[8]"]).module)


@pytest.mark.e2e  # trained_run: a training through the entry point
def test_checkpoint_of_the_old_layout_still_loads(trained_run: Path, tmp_path: Path) -> None:
    """Checkpoints written before the module node held its parts: ``module`` had only the runtime options."""
    ckpt = read_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    run_config = ckpt[CONFIG_KEY]
    assert run_config["module"]["_target_"] == "ddpm_lightning.lit.module.DiffusionModule"
    old_module = {
        k: v for k, v in run_config["module"].items() if k in RUNTIME_KEYS and k not in ("sampler", "optimizer")
    }
    old = tmp_path / "old.ckpt"
    torch.save({**ckpt, CONFIG_KEY: {**run_config, "module": old_module}}, old)
    new_images = load_module(trained_run / "checkpoints" / "last.ckpt")[0].generate(2, seed=0)
    assert torch.equal(load_module(old)[0].generate(2, seed=0), new_images)
    check_compatible(old, _compose("train", list(TINY)).module)
