"""Peak memory, FLOPs per training step and achieved FLOP/s for each model (cnn, unet) × capacity (small, large).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (shapes only, no
arithmetic), forward + backward of one training step; it counts convolutions and matmuls, not
normalisation or activations. Each (model, capacity) is timed in its own process, so the peak resident
set size (CPU) or ``torch.cuda.max_memory_allocated`` (GPU) is that configuration's alone:
``python -m benchmarks.capacity --worker cnn large 16 3 1 cpu 32-true``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import CONF_DIR, REPO, resolve_device, rss_mb, sync

CONFIGS = [("cnn", "small"), ("cnn", "large"), ("unet", "small"), ("unet", "large")]


def build_network(model: str, capacity: str, device: torch.device | str) -> torch.nn.Module:
    """conf/model/<model>.yaml with conf/capacity/<capacity>.yaml (no Hydra composition: a light worker)."""
    cfg = OmegaConf.create(
        {
            "capacity": OmegaConf.load(CONF_DIR / "capacity" / f"{capacity}.yaml"),
            "model": OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml"),
        }
    )
    with torch.device(device):
        return instantiate(cfg.model)


def step_flops(model: str, capacity: str, batch: int) -> int:
    """FLOPs of one training step (forward + backward of the MSE loss) at ``batch``, counted on meta."""
    net = build_network(model, capacity, "meta")
    x = torch.empty(batch, 1, 28, 28, device="meta")
    t = torch.zeros(batch, dtype=torch.long, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        F.mse_loss(net(x, t), x).backward()
    return int(counter.get_total_flops())


def worker(
    model: str, capacity: str, batch: int, steps: int, warmup: int, device_name: str, precision: str
) -> dict[str, Any]:
    """Time ``steps`` Adam steps after ``warmup``; report the peak memory of this process."""
    device = resolve_device(device_name)
    torch.manual_seed(0)
    net = build_network(model, capacity, "cpu").to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
    x = torch.randn(batch, 1, 28, 28, device=device)
    t = torch.randint(1, 1001, (batch,), device=device)
    bf16 = precision.startswith("bf16")
    base_rss = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.mse_loss(net(x, t), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    step_s = (time.perf_counter() - start) / steps
    out = {
        "step_s": step_s,
        "peak_rss_mb": rss_mb(),
        "rss_before_steps_mb": base_rss,
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    if device.type == "cuda":
        out["max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def run_worker(
    model: str,
    capacity: str,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    precision: str,
    timeout: float = 600,
) -> dict[str, Any]:
    """``worker`` in a fresh process (its own peak memory); its JSON line back."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.capacity",
        "--worker",
        model,
        capacity,
        str(batch),
        str(steps),
        str(warmup),
        device.type,
        precision,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"capacity worker {model}/{capacity} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def capacity(
    device: torch.device,
    precision: str,
    peak_flops: float,
    batches: dict[str, int],
    steps: int,
    warmup: int,
    study_batch: int = 128,
    isolated: bool = True,
    conv_flops: float | None = None,
) -> dict[str, Any]:
    """Section 5: one worker process per (model, capacity) (``isolated=False``: in this process, so the
    memory column is this process's; for smoke runs); ``batches`` maps capacity -> timing batch."""
    rows = []
    for model, cap in CONFIGS:
        batch = batches[cap]
        if isolated:
            measured = run_worker(model, cap, batch, steps, warmup, device, precision)
        else:
            measured = worker(model, cap, batch, steps, warmup, device.type, precision)
        flops_timed = step_flops(model, cap, batch)
        rows.append(
            {
                "model": model,
                "capacity": cap,
                "timing_batch": batch,
                **measured,
                "flops_per_step": step_flops(model, cap, study_batch),  # at the study's batch
                "achieved_flops_per_s": flops_timed / measured["step_s"],
                "fraction_of_matmul_peak": flops_timed / measured["step_s"] / peak_flops,
                "fraction_of_conv_rate": flops_timed / measured["step_s"] / conv_flops if conv_flops else None,
                "epoch_s_estimate": measured["step_s"] * study_batch / batch * 468,
            }
        )
    return {
        "precision": precision,
        "study_batch": study_batch,
        "matmul_flops_per_s": peak_flops,
        "conv_flops_per_s": conv_flops,
        "rows": rows,
        "isolated": isolated,
        "flops_note": "FlopCounterMode: convolutions and matmuls only (forward + backward)",
    }


if __name__ == "__main__":
    if len(sys.argv) == 9 and sys.argv[1] == "--worker":
        m, c, b, s, w, d, p = sys.argv[2:]
        print(json.dumps(worker(m, c, int(b), int(s), int(w), d, p)))
    else:
        raise SystemExit(
            "usage: python -m benchmarks.capacity --worker MODEL CAPACITY BATCH STEPS WARMUP DEVICE PRECISION"
        )
