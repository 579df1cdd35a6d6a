"""The benchmark: ``make bench`` = ``python -m benchmarks.bench``.

Runs on the CPU, then on the GPU when torch sees one (``--device`` picks one), and writes
``bench_<device>_<time>.{json,md}`` and ``latest_<device>.{json,md}`` into ``--out``
(default benchmarks/results/, git-ignored). Sections (benchmarks/README.md):
1–2 training throughput and data path, the framework's cost per step, 3 sampling, 4 evaluation
cost, 5 memory and FLOPs per model and capacity, 6 speed options. The table states each target
PASS/FAIL with the measured number. Expensive parts are measured on few steps or images and
extrapolated; the table says where.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import capacity, evaluation, report, sampling, syncs, training
from benchmarks.common import (
    REPO,
    Stopwatch,
    compose_train,
    conv_rate,
    machine,
    matmul_rate,
    quiet,
    resolve_device,
    speed_overrides,
)
from benchmarks.precision import precision_per_size

RESULTS = REPO / "benchmarks" / "results"
SECTIONS = ("training", "sampling", "evaluation", "capacity", "speed")

# Settings per device: (CPU full, GPU full, smoke). Chosen so `make bench` takes ≤ ~15 min on 2 CPU cores.
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": dict(
        reps=6,
        steps=6,
        warmup=2,
        overhead_steps=30,
        overhead_warmup=5,
        overhead_reps=3,
        sync_steps=40,
        n_samples=100,
        bootstrap_rounds=100,
        ddim_steps=[50, 100],
        train_steps=300,
        lr=1e-3,
        eval_n=1000,
        inception_images=16,
        psnr_images=100,
        kid_subsets=10,
        capacity_batches={"small": 128, "large": 16},
        rate_sizes=(2048, 16),  # the peak-rate problems: matmul n, 7x7 conv batch
        capacity_steps=2,
        capacity_warmup=1,
        option_steps=6,
        option_warmup=2,
        option_reps=3,
        compile=True,
        precision_sizes={},  # the large CNN's step takes seconds on a CPU; one precision for every size there
        overrides=[],
    ),
    "cuda": dict(
        reps=5,
        steps=100,
        warmup=20,
        overhead_steps=200,
        overhead_warmup=20,
        overhead_reps=3,
        sync_steps=300,
        n_samples=1000,
        bootstrap_rounds=100,
        ddim_steps=[50, 100],
        train_steps=3000,
        lr=1e-3,
        eval_n=1000,
        inception_images=500,
        psnr_images=1000,
        kid_subsets=100,
        capacity_batches={"small": 128, "large": 128},
        rate_sizes=(8192, 256),  # a GPU needs bigger problems to be timed at its rate
        capacity_steps=20,
        capacity_warmup=5,
        option_steps=100,
        option_warmup=20,
        option_reps=3,
        compile=True,
        precision_sizes={"small": ["capacity=small"], "large": ["capacity=large"]},
        overrides=[],
    ),
    "smoke": dict(
        reps=1,
        steps=2,
        warmup=1,
        overhead_steps=3,
        overhead_warmup=1,
        overhead_reps=1,
        sync_steps=24,
        n_samples=8,
        bootstrap_rounds=10,  # the FID-ratio intervals: 100 redraws of 9 samplers took a minute on 2 busy cores
        ddim_steps=[5, 10],
        train_steps=2,
        lr=1e-3,
        eval_n=100,
        inception_images=0,
        psnr_images=4,
        kid_subsets=2,
        capacity_batches={"small": 2, "large": 1},
        rate_sizes=(256, 1),  # seconds even where bf16 is emulated (a 2048 bf16 matmul took minutes there)
        capacity_steps=1,
        capacity_warmup=0,
        option_steps=2,
        option_warmup=1,
        option_reps=1,
        compile=False,
        precision_sizes={"small": ["capacity.channels=[4]"], "large": ["capacity.channels=[96]"]},
        overrides=["capacity.channels=[4]", "data.batch_size=16", "T=20", "data.train_subset=512"],
    ),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def verdict(so: dict[str, Any], noise: float = 0.03) -> str:
    """Whether the preset's choice agrees with the measured ratio of each option (± ``noise`` = no change)."""
    notes = []
    for name, ratio in so["ratio_to_preset"].items():
        if name == "preset":
            continue
        if ratio > 1 + noise:
            notes.append(f"{name} measured ×{ratio:.2f} (faster than the preset)")
        elif ratio < 1 - noise:
            notes.append(f"{name} ×{ratio:.2f} (slower: the preset is right)")
        else:
            notes.append(f"{name} ×{ratio:.2f} (within ±{noise:.0%}: no change)")
    return "; ".join(notes) + "."


def run(device: torch.device, p: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    quiet()
    sw = Stopwatch(log)
    start = time.perf_counter()
    overrides = list(p["overrides"]) + list(args.override)
    meta = machine(device)
    meta.update(date=dt.datetime.now().isoformat(timespec="seconds"), smoke=args.smoke, overrides=overrides)
    r: dict[str, Any] = {"meta": meta, "settings": {k: v for k, v in p.items() if k != "overrides"}}
    notes: list[str] = []
    on = set(args.sections)
    with tempfile.TemporaryDirectory(prefix="ddpm-bench-") as work:
        preset = compose_train([*speed_overrides(device), *overrides], work)
        data_root, precision = str(preset.data.root), str(preset.trainer.precision)
        if preset.get("float32_matmul_precision"):  # the preset's TF32 setting, as train.py applies it
            torch.set_float32_matmul_precision(str(preset.float32_matmul_precision))
        if "training" in on:
            r["training"] = sw.section(
                "1-2 training throughput and data path",
                lambda: training.training_paths(device, p["steps"], p["warmup"], p["reps"], work, overrides),
            )
            r["overhead"] = sw.section(
                "framework cost per step",
                lambda: training.overhead(
                    device, p["overhead_steps"], p["overhead_warmup"], p["overhead_reps"], work, overrides
                ),
            )
            r["host_syncs"] = sw.section(
                "host syncs per training step", lambda: syncs.host_syncs(device, p["sync_steps"], work, overrides)
            )
        if "sampling" in on:
            r["sampling"] = sw.section(
                "3 sampling",
                lambda: sampling.sampling(
                    device,
                    p["n_samples"],
                    p["ddim_steps"],
                    args.ckpt,
                    Path(args.out) / "cache",
                    p["train_steps"],
                    p["lr"],
                    overrides,
                    work,
                    data_root,
                    rounds=p["bootstrap_rounds"],
                ),
            )
        if "evaluation" in on:
            step_s = r["training"]["step_s"] if "training" in r else float("nan")
            r["evaluation"] = sw.section(
                "4 evaluation cost",
                lambda: evaluation.evaluation(
                    device,
                    step_s,
                    data_root,
                    p["eval_n"],
                    p["inception_images"],
                    p["psnr_images"],
                    p["kid_subsets"],
                    r.get("sampling"),
                ),
            )
        if "capacity" in on:
            dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
            n, batch = p["rate_sizes"]
            peak, conv = matmul_rate(device, dtype, n=n), conv_rate(device, dtype, batch=batch)
            r["capacity"] = sw.section(
                "5 memory and FLOPs",
                lambda: capacity.capacity(
                    device,
                    precision,
                    peak,
                    p["capacity_batches"],
                    p["capacity_steps"],
                    p["capacity_warmup"],
                    isolated=not args.smoke,
                    conv_flops=conv,
                ),
            )
            if any(x["fraction_of_matmul_peak"] > 1 for x in r["capacity"]["rows"]):
                notes.append(
                    "Some rows exceed the measured matmul rate: torch's matmul here (its BLAS) is slower than the "
                    "convolution library the networks run on; the conv-rate column is the closer reference."
                )
        if "speed" in on:
            r["speed_options"] = sw.section(
                "6 speed options",
                lambda: training.speed_options(
                    device,
                    p["option_steps"],
                    p["option_warmup"],
                    p["option_reps"],
                    work,
                    overrides,
                    with_compile=p["compile"] and not args.no_compile,
                ),
            )
            r["speed_options"]["verdict"] = verdict(r["speed_options"])
            if p["precision_sizes"]:
                r["precision_per_size"] = sw.section(
                    "6b precision per network size",
                    lambda: precision_per_size(
                        device,
                        p["precision_sizes"],
                        p["option_steps"],
                        p["option_warmup"],
                        p["option_reps"],
                        work,
                        overrides,
                    ),
                )
    notes.append(
        f"Extrapolated: an epoch = measured step time × 468; Inception features timed on "
        f"{p['inception_images']} images and "
        f"PSNR/SSIM on {p['psnr_images']} samples, scaled to N = {p['eval_n']}; "
        f"KID from {p['kid_subsets']} of 100 subsets."
    )
    if device.type == "cpu":
        notes.append(
            "On a shared machine the load average (above) inflates every time; ratios come from interleaved "
            "repetitions, so they are less affected than absolute numbers."
        )
    r["notes"] = notes
    meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["wall_s"] = round(time.perf_counter() - start, 1)
    meta["section_s"] = sw.sections
    r["targets"] = report.targets(r)
    return r


def write(r: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    dev = r["meta"]["device"].split(":")[0] + ("_smoke" if r["meta"].get("smoke") else "")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text, md = json.dumps(_finite(r), indent=2, allow_nan=False, default=str), report.markdown(r)
    for name in (f"bench_{dev}_{stamp}", f"latest_{dev}"):
        (out / f"{name}.json").write_text(text + "\n")
        (out / f"{name}.md").write_text(md + "\n")
    return out / f"latest_{dev}.json", out / f"latest_{dev}.md"


def _finite(x: Any) -> Any:
    """JSON has no NaN/inf: they become null (the markdown keeps them visible)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["all", "cpu", "cuda"], default="all", help="all: cpu, then cuda if present")
    ap.add_argument("--out", default=str(RESULTS), help="results directory (default benchmarks/results/)")
    ap.add_argument(
        "--ckpt", default=None, help="checkpoint for the sampling section (default: train one, cached in OUT/cache)"
    )
    ap.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help=(
            "images per sampler in section 3 (default: 100 on CPU, 1000 on GPU; "
            "classifier FID is biased and noisy at small n)"
        ),
    )
    ap.add_argument("--smoke", action="store_true", help="tiny settings (seconds; for tests): numbers are meaningless")
    ap.add_argument(
        "--no-compile",
        action="store_true",
        help="skip the torch.compile variant (its compilation takes ~30-60 s on CPU)",
    )
    ap.add_argument(
        "--override", action="append", default=[], help="extra train-config override for every section (repeatable)"
    )
    ap.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="run only these (evaluation uses training's step time; its sampling rows need sampling)",
    )
    args = ap.parse_args(argv)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available() or args.device == "cuda"]
    for name in devices:
        device = resolve_device(name)
        profile = dict(PROFILES["smoke" if args.smoke else device.type])
        if args.n_samples:
            profile["n_samples"] = args.n_samples
        log(f"benchmark on {device} (load average {os.getloadavg()[0]:.2f})")
        r = run(device, profile, args)
        js, md = write(r, Path(args.out))
        print(md.read_text())
        log(f"wrote {js} and {md}")
    return 0  # a FAIL is a finding, reported in the table, not a crash


if __name__ == "__main__":
    sys.exit(main())
