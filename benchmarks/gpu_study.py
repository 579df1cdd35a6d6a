"""``make bench-gpu``: the issue's GPU targets in one job of at most 10 minutes on one GPU, each PASS/FAIL.

    python -m benchmarks.gpu_study                 # one H200: <= 10 min (internal budget --budget-s 540)
    python -m benchmarks.gpu_study --smoke         # the same plumbing on CPU with tiny settings (~3-5 min)

1. ``benchmarks.bench --sections training speed --no-compile`` on the GPU: Lightning / bare loop at batch 128,
   data path, host syncs per steady step, precision per network size against the speed preset.
2. The five study runs as ``experiment=study_fast`` jobs (``experiment=study_<name> callbacks=metrics_fast``),
   the real entry point at full size, ``--epochs`` (2) each, with ``benchmarks.timing.EpochTimer``: per epoch
   the training, validation and each metric callback's seconds. The last epoch also runs the final
   evaluations: ``final/*`` is exactly the study's every-epoch protocol (ancestral-1000, N = 1000, FID + KID +
   classifier FID + PSNR/SSIM), so one run gives both projections to 50 epochs:
   - ``experiment=study``: start-up + first-epoch extra + 50 × (epoch without metrics + the protocol's seconds);
   - ``experiment=study_fast``: start-up + first-epoch extra + 50 × (epoch without metrics + the 50-call
     per-epoch metrics) + the final evaluations once.
   A run that would overrun its share of the budget is stopped; the epochs it finished still count, and a
   number it could not measure is missing, which never passes.
Writes ``gpu_study_<time>.{json,md}`` into ``--out`` (default benchmarks/results/), the runs below it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RUNS = [
    "study_linear",
    "study_geometric",
    "study_custom",
    "study_des",
    "study_large",
]  # large last: it gets what the others leave
STUDY_EPOCHS = 50
METRIC_PARTS = ("generate_s", "psnr_ssim_s", "inception_s", "classifier_s")  # GenerativeMetrics' walltime/* keys
# --smoke: the Makefile's reproduce-smoke settings on CPU, without Inception FID/KID, on few samples.
_G, _F, _B = "callbacks.generative_metrics", "callbacks.final_metrics", "callbacks.final_metrics_n10000"
SMOKE = [
    "speed=cpu",
    "+debug=smoke",
    f"{_G}.n=32",
    f"{_G}.every_n_epochs=1",
    f"{_G}.sampler.num_steps=5",
    f"{_F}.n=32",
    f"{_F}.psnr_references=16",
    f"{_B}.n=64",
    *[f"{node}.{k}=false" for node in (_G, _F, _B) for k in ("fid", "kid")],  # Inception: ~40 s/epoch on CPU
]


def read_epochs(path: Path) -> list[dict[str, Any]]:
    """Per-epoch rows from an EpochTimer file (none if the run never finished an epoch)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _metric_s(times: dict[str, float], prefix: str) -> float | None:
    """Seconds of one GenerativeMetrics evaluation from its logged ``walltime/<prefix><part>`` values."""
    parts = [times[f"walltime/{prefix}{k}"] for k in METRIC_PARTS if f"walltime/{prefix}{k}" in times]
    return sum(parts) if parts else None


def project(rows: list[dict[str, Any]], startup_s: float, epochs: int = STUDY_EPOCHS) -> dict[str, Any]:
    """Both studies' cost of this run over ``epochs`` epochs, from the EpochTimer rows of a study_fast job.

    base = the last epoch without any metric evaluation; per epoch the study adds its protocol (the last epoch's
    ``final/*`` evaluation), study_fast its 50-call evaluation (``walltime/*``); study_fast pays the final ones once.
    The first epoch's extra (compilation, cuDNN autotuning) = first epoch − (base + per-epoch metrics)."""
    if not rows:
        return {"epochs_done": 0, "projected_s": None, "projected_fast_s": None}
    last, times = rows[-1], rows[-1].get("metric_times", {})
    fast, protocol, big = _metric_s(times, ""), _metric_s(times, "final_"), _metric_s(times, "final_n10000_")
    out: dict[str, Any] = {
        "epochs_done": len(rows),
        "first_epoch_s": rows[0]["epoch_s"],
        "train_s": last.get("train_s"),
        "val_s": last.get("val_s"),
        "fast_metrics_s": fast,
        "protocol_metrics_s": protocol,
        "n10000_s": big,
        "projected_s": None,
        "projected_fast_s": None,
    }
    if fast is None or protocol is None or big is None:  # the last epoch was not the final one
        return out
    base = last["epoch_s"] - fast - protocol - big
    extra = max(0.0, rows[0]["epoch_s"] - (base + fast)) if len(rows) > 1 else 0.0
    out["base_epoch_s"] = base
    out["projected_s"] = startup_s + extra + epochs * (base + protocol)
    out["projected_fast_s"] = startup_s + extra + epochs * (base + fast) + protocol + big
    return out


def run_one(name: str, epochs: int, run_dir: Path, overrides: list[str], timeout: float) -> dict[str, Any]:
    timer = run_dir / "epochs.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "ddpm_lightning.train",
        f"experiment={name}",
        "callbacks=metrics_fast",  # one job of experiment=study_fast
        f"trainer.max_epochs={epochs}",
        *overrides,
        f"hydra.run.dir={run_dir}",
        "+callbacks.epoch_timer._target_=benchmarks.timing.EpochTimer",
        f"+callbacks.epoch_timer.path={timer}",
    ]
    launched, tick = time.time(), time.perf_counter()
    status = "ok"
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(timeout, 1))
        if proc.returncode != 0:
            status = f"failed ({proc.returncode}): " + " | ".join(proc.stderr.strip().splitlines()[-3:])
    except subprocess.TimeoutExpired:
        status = f"stopped after {timeout:.0f} s (budget)"
    wall = time.perf_counter() - tick
    rows = read_epochs(timer)
    startup = rows[0]["started_at"] - launched if rows else wall  # launch -> first epoch: imports, data, metric set-up
    return {
        "run": name,
        "status": status,
        "wall_s": wall,
        "startup_s": startup,
        "epochs": rows,
        **project(rows, startup),
        "command": " ".join(cmd[1:]),
    }


def bench_sections(out: Path, smoke: bool, timeout: float) -> tuple[dict[str, Any], float]:
    """``benchmarks.bench --sections training speed`` on the GPU (CPU with --smoke): its JSON and seconds."""
    device = "cpu" if smoke else "cuda"
    cmd = [sys.executable, "-m", "benchmarks.bench", "--device", device, "--sections", "training", "speed"]
    cmd += ["--no-compile", "--out", str(out), *(["--smoke"] if smoke else [])]
    tick = time.perf_counter()
    try:
        subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        pass
    path = out / f"latest_{device}{'_smoke' if smoke else ''}.json"
    return (json.loads(path.read_text()) if path.is_file() else {}), time.perf_counter() - tick


def targets(bench: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's GPU targets, PASS/FAIL with the measured number; a missing number never passes."""

    def get(d: Any, *keys: str) -> Any:
        for k in keys:
            d = d.get(k) if isinstance(d, dict) else None
        return d

    small = [r.get("protocol_metrics_s") for r in runs if r["run"] != "study_large"]
    large = [r.get("protocol_metrics_s") for r in runs if r["run"] == "study_large"]
    sizes = get(bench, "precision_per_size", "sizes") or {}

    def total(key: str) -> float | None:
        vals = [r.get(key) for r in runs]
        return None if not vals or any(v is None for v in vals) else sum(vals)

    rows = [
        ("Lightning / bare loop, batch 128", get(bench, "training", "lightning_vs_bare", "median"), ">=", 0.95),
        ("data path / synthetic tensors", get(bench, "training", "data_vs_synthetic", "median"), ">=", 0.98),
        ("host syncs per steady training step", get(bench, "host_syncs", "reads_per_steady_step"), "<=", 0),
        (
            "speed preset picks the fastest precision (sizes agreeing / sizes)",
            sum(bool(v["preset_agrees"]) for v in sizes.values()) / len(sizes) if sizes else None,
            ">=",
            1.0,
        ),
        ("per-epoch metrics at the study's protocol, small CNN (s, worst run)", _worst(small), "<=", 3.0),
        ("per-epoch metrics at the study's protocol, large CNN (s)", _worst(large), "<=", 25.0),
        ("experiment=study, 5 runs × 50 epochs (min)", _min(total("projected_s")), "<=", 30.0),
        ("experiment=study_fast, 5 runs × 50 epochs (min)", _min(total("projected_fast_s")), "<=", 8.0),
    ]
    out = []
    for name, value, op, threshold in rows:
        ok = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        out.append(
            {"target": name, "measured": value, "op": op, "threshold": threshold, "result": "PASS" if ok else "FAIL"}
        )
    return out


def _worst(vals: list[float | None]) -> float | None:
    return None if not vals or any(v is None for v in vals) else max(vals)  # type: ignore[type-var]


def _min(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


def markdown(res: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "–" if x is None else f"{x:.1f}"

    def mins(x: Any) -> str:
        return "–" if x is None else f"{x / 60:.1f} min"

    L = [
        f"# Study on {res['device']}: {res['epochs']} epochs per run (experiment=study_fast jobs), projected to "
        f"{STUDY_EPOCHS}",
        "",
        f"{res['date']}; overrides {res['overrides']}; wall {res['wall_s']:.0f} s (budget {res['budget_s']:.0f} s; "
        f"bench sections {res['bench_s']:.0f} s).",
        "",
        "## Targets",
        "",
        "| target | measured | threshold | result |",
        "|---|---|---|---|",
    ]
    for t in res["targets"]:
        m = t["measured"]
        L.append(
            f"| {t['target']} | {'–' if m is None else f'{m:.3g}'} | {t['op']} {t['threshold']} | **{t['result']}** |"
        )
    L += [
        "",
        "## Runs",
        "",
        "| run | status | epochs | start-up s | first epoch s | train s | val s | metrics: 50-call s "
        "| study protocol s "
        "| N=10000 s | study, 50 epochs | study_fast, 50 epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        L.append(
            f"| {r['run']} | {r['status']} | {r.get('epochs_done', 0)} | {f(r['startup_s'])} | "
            f"{f(r.get('first_epoch_s'))} | {f(r.get('train_s'))} | {f(r.get('val_s'))} | "
            f"{f(r.get('fast_metrics_s'))} | {f(r.get('protocol_metrics_s'))} | {f(r.get('n10000_s'))} | "
            f"{mins(r.get('projected_s'))} | {mins(r.get('projected_fast_s'))} |"
        )
    sizes = (res["bench"].get("precision_per_size") or {}).get("sizes") or {}
    if sizes:
        L += [
            "",
            "## Precision per network size (bare loop)",
            "",
            "| size | fastest | preset | agrees |",
            "|---|---|---|---|",
        ]
        L += [
            f"| {k} | {v['fastest']} | {v['preset']} | {'yes' if v['preset_agrees'] else 'no'} |"
            for k, v in sizes.items()
        ]
    L += [
        "",
        "metrics = GenerativeMetrics' logged walltime/* seconds (sampling, PSNR/SSIM, Inception FID/KID, "
        "classifier FID). "
        "The study protocol's seconds come from the last epoch's final/* evaluation (ancestral-1000, N = 1000).",
    ]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_study", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--epochs", type=int, default=2, help="epochs per run (default 2: the last runs the final evaluations)"
    )
    ap.add_argument(
        "--budget-s", type=float, default=None, help="wall-clock budget for everything (default 540 s; --smoke 1800 s)"
    )
    ap.add_argument("--bench-s", type=float, default=150, help="of which the bench sections (default 150 s)")
    ap.add_argument("--runs", nargs="+", default=RUNS, choices=RUNS)
    ap.add_argument("--extra", nargs="*", default=[], help="more train overrides for every run")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny settings: checks the plumbing, not the speed")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    if args.epochs < 1:
        raise SystemExit("error: --epochs must be >= 1")
    if args.budget_s is None:  # a loaded 2-core CPU starts each smoke run in ~30-60 s
        args.budget_s = 1800.0 if args.smoke else 540.0
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    overrides = (SMOKE if args.smoke else ["speed=gpu"]) + list(args.extra)
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("error: no GPU visible to torch; run with --smoke to check the script on CPU")
        device = torch.cuda.get_device_name(0)
    else:
        device = "cpu (smoke)"
    start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - start:5.0f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    log("bench sections: training, speed")
    bench, bench_s = bench_sections(out / f"gpu_study_{stamp}" / "bench", args.smoke, min(args.bench_s, args.budget_s))
    runs = []
    for i, name in enumerate(args.runs):
        left = args.budget_s - (time.perf_counter() - start)
        share = left / (len(args.runs) - i)  # an even share of what is left, so every run gets its turn
        log(f"{name}: {args.epochs} epochs (≤ {share:.0f} s)")
        r = run_one(name, args.epochs, out / f"gpu_study_{stamp}" / name, overrides, share)
        runs.append(r)
        log(f"    {r['status']}; epochs {r.get('epochs_done', 0)}, study protocol {r.get('protocol_metrics_s')} s")
    res = {
        "device": device,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "epochs": args.epochs,
        "overrides": overrides,
        "budget_s": args.budget_s,
        "bench_s": bench_s,
        "wall_s": time.perf_counter() - start,
        "bench": {k: bench.get(k) for k in ("training", "host_syncs", "precision_per_size", "speed_options")},
        "runs": runs,
        "targets": targets(bench, runs),
        "load_average": os.getloadavg(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"gpu_study_{stamp}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    md = markdown(res)
    (out / f"gpu_study_{stamp}.md").write_text(md)
    print(md)
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
