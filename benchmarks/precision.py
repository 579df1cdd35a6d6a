"""Float32 against bf16 autocast per network size, and whether the device's speed preset picks the faster
(``ddpm_lightning/speed.py`` ``gpu_precision``): section 6b of the benchmark."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from benchmarks.common import compose_train, interleaved, median, paired_ratios, speed_overrides
from benchmarks.training import _core_parts, bare_loop, train_images


def precision_per_size(
    device: torch.device,
    sizes: dict[str, list[str]],
    steps: int,
    warmup: int,
    reps: int,
    workdir: str,
    overrides: list[str],
    noise: float = 0.03,
) -> dict[str, Any]:
    """Float32 against bf16 autocast per network size (``sizes``: name -> overrides, e.g. capacity=large), bare
    loop, alternating repetitions: which one measured fastest, and whether the device's speed preset
    (``ddpm_lightning/speed.py``) picks it (or one within ``noise`` of it)."""
    rows: dict[str, Any] = {}
    x_host = train_images(compose_train([*speed_overrides(device), *overrides], workdir).data)
    for size, extra in sizes.items():
        cfg = compose_train([*speed_overrides(device), *overrides, *extra], workdir)
        batch = int(cfg.data.batch_size)
        x = x_host.to(device) if cfg.data.on_device else x_host
        (net32, schedule, degradation), net16 = _core_parts(cfg, device), _core_parts(cfg, device)[0]
        args = (schedule, degradation, x, batch, steps, warmup, device)
        values = interleaved(
            {
                "32-true": partial(bare_loop, net32, *args, bf16=False),
                "bf16-mixed": partial(bare_loop, net16, *args, bf16=True),
            },
            reps,
        )
        ips = {k: median(v) for k, v in values.items()}
        fastest = max(ips, key=ips.get)  # type: ignore[arg-type]
        preset = str(cfg.trainer.precision)
        picked = ips.get("bf16-mixed" if preset.endswith("-mixed") else "32-true", float("nan"))
        rows[size] = {
            "channels": list(cfg.capacity.channels),
            "model": str(cfg.model._target_).rsplit(".", 1)[-1],
            "batch": batch,
            "images_per_s": ips,
            "bf16_vs_float32": median(paired_ratios(values, "bf16-mixed", "32-true")),
            "fastest": fastest,
            "preset": preset,
            "preset_agrees": bool(picked >= (1 - noise) * ips[fastest]),
        }
    return {"preset_name": speed_overrides(device)[0], "steps": steps, "reps": reps, "noise": noise, "sizes": rows}
