"""The study on one GPU, a few epochs per run, and the projected cost of the whole study (50 epochs each).

    python -m benchmarks.gpu_study                 # the five study runs, 2 epochs each, speed=gpu
                                                   # (≤ 10 min on one H200)
    python -m benchmarks.gpu_study --epochs 3 --extra callbacks.generative_metrics.n=500
    python -m benchmarks.gpu_study --smoke         # the same plumbing on CPU with tiny settings (~2 min)

Each run is the real entry point, ``python -m ddpm_lightning.train experiment=study_<name> speed=gpu
trainer.max_epochs=E``, at full size (T = 1000, 60,000 images, every-epoch metrics at N = 1000) with
``benchmarks.timing.EpochTimer`` added, which writes where each epoch's time goes. The projection
per run is start-up + 50 × the steady epoch (the median epoch after the first, which also pays for
compilation and cuDNN autotuning; the first if only one ran). A run that would overrun ``--budget-s``
is stopped, and the epochs it finished still count. Writes ``gpu_study_<time>.{json,md}`` into
``--out`` (default benchmarks/results/) and the runs into ``--out/gpu_study_<time>/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
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
# --smoke: the Makefile's reproduce-smoke settings on CPU, without Inception FID/KID.
SMOKE = [
    "speed=cpu",
    "+debug=smoke",
    "callbacks.generative_metrics.n=32",
    "callbacks.generative_metrics.every_n_epochs=1",
    "callbacks.generative_metrics.kid_subset_size=16",  # conf/debug/smoke.yaml, metrics every epoch on 32 samples
    "callbacks.generative_metrics.fid=false",
    "callbacks.generative_metrics.kid=false",
]  # Inception: ~40 s/epoch on CPU


def read_epochs(path: Path) -> list[dict[str, Any]]:
    """Per-epoch rows from an EpochTimer file (none if the run never finished an epoch)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def project(rows: list[dict[str, Any]], startup_s: float, epochs: int = STUDY_EPOCHS) -> dict[str, Any]:
    """Start-up + ``epochs`` × the steady epoch (median of epochs after the first, else the first)."""
    if not rows:
        return {"epochs_done": 0, "projected_s": None}
    steady = rows[1:] or rows
    out: dict[str, Any] = {"epochs_done": len(rows), "first_epoch_s": rows[0]["epoch_s"]}
    for key in ("epoch_s", "train_s", "val_s", "eval_s"):
        vals = [r[key] for r in steady if key in r]
        out[f"steady_{key}"] = statistics.median(vals) if vals else None
    out["projected_s"] = startup_s + (rows[0]["epoch_s"] - out["steady_epoch_s"]) + epochs * out["steady_epoch_s"]
    return out


def run_one(name: str, epochs: int, run_dir: Path, overrides: list[str], timeout: float) -> dict[str, Any]:
    timer = run_dir / "epochs.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "ddpm_lightning.train",
        f"experiment={name}",
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


def markdown(res: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "–" if x is None else f"{x:.1f}"

    L = [
        f"# Study on {res['device']}: {res['epochs']} epochs per run, projected to {STUDY_EPOCHS}",
        "",
        f"{res['date']}; overrides {res['overrides']}; wall {res['wall_s']:.0f} s (budget {res['budget_s']:.0f} s).",
        "",
        "| run | status | epochs | start-up s | first epoch s | steady epoch s | train s | val s | eval s "
        "| projected 50 epochs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        proj = r.get("projected_s")
        L.append(
            f"| {r['run']} | {r['status']} | {r.get('epochs_done', 0)} | {f(r['startup_s'])} | "
            f"{f(r.get('first_epoch_s'))} | "
            f"{f(r.get('steady_epoch_s'))} | {f(r.get('steady_train_s'))} | {f(r.get('steady_val_s'))} | "
            f"{f(r.get('steady_eval_s'))} | "
            f"{'–' if proj is None else f'{proj / 60:.1f} min'} |"
        )
    total = res["projected_total_s"]
    L += [
        "",
        f"**Projected whole study ({len(res['runs'])} runs × {STUDY_EPOCHS} epochs, one after another): "
        + ("incomplete (a run finished no epoch)" if total is None else f"{total / 60:.1f} min ({total / 3600:.2f} h)")
        + "**",
        "",
        "eval = the every-epoch metrics (sampling N images with the run's sampler, FID/KID, PSNR/SSIM, denoising).",
    ]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_study", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--epochs", type=int, default=2, help="epochs per run (default 2; the projection uses epochs after the first)"
    )
    ap.add_argument("--budget-s", type=float, default=540, help="wall-clock budget for all runs (default 540 s)")
    ap.add_argument("--runs", nargs="+", default=RUNS, choices=RUNS)
    ap.add_argument("--extra", nargs="*", default=[], help="more train overrides for every run")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny settings: checks the plumbing, not the speed")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    if args.epochs < 1:
        raise SystemExit("error: --epochs must be >= 1")
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
    runs = []
    for i, name in enumerate(args.runs):
        left = args.budget_s - (time.perf_counter() - start)
        share = left / (len(args.runs) - i)  # an even share of what is left, so every run gets its turn
        print(
            f"[{time.perf_counter() - start:5.0f} s] {name}: {args.epochs} epochs (≤ {share:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        r = run_one(name, args.epochs, out / f"gpu_study_{stamp}" / name, overrides, share)
        runs.append(r)
        print(
            f"    {r['status']}; epochs {r.get('epochs_done', 0)}, steady epoch {r.get('steady_epoch_s')}",
            file=sys.stderr,
            flush=True,
        )
    done = [r["projected_s"] for r in runs]
    res = {
        "device": device,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "epochs": args.epochs,
        "overrides": overrides,
        "budget_s": args.budget_s,
        "wall_s": time.perf_counter() - start,
        "runs": runs,
        "projected_total_s": None if any(x is None for x in done) else sum(done),
        "load_average": os.getloadavg(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"gpu_study_{stamp}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    (out / f"gpu_study_{stamp}.md").write_text(md)
    print(md)
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
