"""The module's diffusion process and sampler: one process over its own schedule and degradation,
the sampler built once from it (issue 14)."""

from __future__ import annotations

import torch

from ddpm_lightning.core import schedules
from ddpm_lightning.core.degradations import EntropyScaled
from ddpm_lightning.core.networks.cnn import CNN
from ddpm_lightning.core.process import DiffusionProcess
from ddpm_lightning.core.samplers import Ancestral, Sampler
from ddpm_lightning.lit.module import DiffusionModule


def test_the_sampler_is_built_once_from_the_modules_process() -> None:
    built: list[DiffusionProcess] = []

    def factory(process: DiffusionProcess) -> Sampler:  # what a `_partial_: true` sampler config gives
        built.append(process)
        return Ancestral(process)

    module = DiffusionModule(CNN(channels=(4,)), schedules.linear(T=5), EntropyScaled(sample_scale=0.8), factory)
    assert len(built) == 1 and module.make_sampler() is module.sampler
    assert built[0].schedule is module.schedule and built[0].degradation is module.degradation
    assert built[0].noise_scale == module.process.noise_scale == 0.8
    module.generate(3, batch_size=2)  # two chunks, one sampler
    module.generate(2)
    assert len(built) == 1
    other = module.make_sampler(factory)  # another factory (evaluate's sampler=...) builds its own, once
    assert len(built) == 2 and torch.equal(module.generate(2, sampler=other), module.generate(2))
