"""Summarise a sweep: ``python -m ddpm_lightning.report <sweep dir> [--early-epoch E] [--late-epoch L]``.

Reads every run under the directory (a multirun sweep dir, a folder of runs, or one run dir): its
config and overrides (.hydra/), final metrics (metrics.yaml), logged scalars (tensorboard/ via
EventAccumulator) and sample grids (samples/epoch_XXX.png). Writes into the directory (or --out):

- ``report.md``: the headline metrics per run (each FID beside its real-vs-real floor), runs aggregated
  over seeds (mean ± 95 % interval, ranking), failed runs and their errors, the figures;
- ``report.csv``: every column per run, machine-readable (with each run's error and path);
- ``report_seeds.csv``: the aggregation over seeds, when some runs differ only in ``seed``;
- ``fig_loss.png``, ``fig_psnr_ssim.png``, ``fig_fid.png``: train/val loss, PSNR/SSIM and FID/KID per epoch;
- ``fig_schedules.png``: β_t, ᾱ_t and SNR(t) of the schedules used;
- ``fig_samples.png``: early and late sample grids of each run side by side (default: its first and last);
- ``fig_quality_compute.png``: FID and classifier FID against training time (``walltime/train_s``), one line per run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ddpm_lightning.core.errors import DDPMError

FIGURES = {
    "loss": "fig_loss.png",
    "psnr_ssim": "fig_psnr_ssim.png",
    "fid": "fig_fid.png",
    "schedules": "fig_schedules.png",
    "samples": "fig_samples.png",
    "quality_compute": "fig_quality_compute.png",
}
CAPTIONS = {
    "loss": (
        "Training loss (epoch mean) and validation loss per epoch, one line per run (dashed: failed or incomplete)."
    ),
    "psnr_ssim": "PSNR and SSIM of the generated samples per epoch (val/psnr, val/ssim).",
    "fid": "FID, KID and the MNIST-classifier FID per epoch (val/fid, val/kid, val/fid_mnist).",
    "schedules": "β_t, ᾱ_t and SNR(t) (log scale) of each distinct noise schedule the runs used.",
    "samples": "Each run's fixed-seed sample grid at the early and the late epoch (default: its first and last grid).",
    "quality_compute": (
        "FID and classifier FID (log scale) against training time in minutes (walltime/train_s at each epoch end, "
        "validation and metrics included; older runs: train_time_s spread evenly, see the notes; labels: epochs "
        "trained), one line per run (val/*); stars: the last epoch's final/* evaluation."
    ),
}


def report(
    root: str | Path, out_dir: str | Path | None = None, early_epoch: int | None = None, late_epoch: int | None = None
) -> dict[str, Path]:
    """Write the table, figures and markdown for the runs under ``root``; return {name: path}."""
    from ddpm_lightning.reporting import figures, quality_compute, seeds
    from ddpm_lightning.reporting.runs import read_runs, varying_overrides
    from ddpm_lightning.reporting.table import build_table, write_table

    root = Path(root)
    runs = read_runs(root)
    out = Path(out_dir) if out_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    labels = {name: (f"{name}: {' '.join(o)}" if o else name)[:70] for name, o in varying_overrides(runs).items()}

    table = build_table(runs)
    csv, markdown = write_table(table, out)
    paths = {"csv": csv}
    across = seeds.aggregate(runs)
    seeds_csv = seeds.write(across, out)
    if seeds_csv is not None:
        paths["seeds_csv"] = seeds_csv
    notes: list[str] = []
    curves = {
        "loss": ([("train/loss", "loss"), ("val/loss", "loss")], "diffusion loss per epoch"),
        "psnr_ssim": ([("val/psnr", "PSNR (dB)"), ("val/ssim", "SSIM")], "sample quality per epoch"),
        "fid": (
            [("val/fid", "FID"), ("val/kid", "KID"), ("val/fid_mnist", "FID (MNIST classifier)")],
            "FID / KID per epoch",
        ),
    }
    for name, (panels, title) in curves.items():
        paths[name] = out / FIGURES[name]
        notes += figures.plot_curves(runs, panels, labels, paths[name], title)
    paths["schedules"] = out / FIGURES["schedules"]
    notes += figures.plot_schedules(runs, paths["schedules"])
    paths["samples"] = out / FIGURES["samples"]
    notes += figures.plot_samples(runs, labels, early_epoch, late_epoch, paths["samples"])
    paths["quality_compute"] = out / FIGURES["quality_compute"]
    notes += quality_compute.plot_runs(runs, labels, paths["quality_compute"])

    counts = {s: sum(r.status == s for r in runs) for s in ("ok", "failed", "incomplete")}
    lines = [
        f"# Report: {root}",
        "",
        f"{len(runs)} runs: {counts['ok']} finished, {counts['failed']} failed, {counts['incomplete']} incomplete. "
        "Final metrics come from each run's metrics.yaml (blank: not logged; failed runs have none). "
        "Floors: the same FID between two disjoint real sets (first N train vs first N test images) at the run's N. "
        "Every column is in report.csv.",
        "",
        markdown,
        "",
        *seeds.markdown(across),
    ]
    optuna = root / "optimization_results.yaml"  # an hparams_search sweep (Optuna sweeper)
    if optuna.is_file():
        from omegaconf import OmegaConf

        best = OmegaConf.load(optuna)
        params = " ".join(f"{k}={v}" for k, v in (best.get("best_params") or {}).items())
        lines += [f"Optuna search: best value {best.get('best_value')} with {params}.", ""]
    failed = [r for r in runs if r.status != "ok"]
    if failed:
        lines += (
            ["## Failed or incomplete runs", ""] + [f"- run {r.name} ({r.status}): {r.error}" for r in failed] + [""]
        )
    lines += ["## Figures", ""]
    for name in FIGURES:
        lines += [f"![{name}]({paths[name].name})", "", f"*{paths[name].name}*: {CAPTIONS[name]}", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(lines))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddpm_lightning.report",
        description=(
            "Summarise training runs: a table of final metrics (report.md, report.csv) and figures, "
            "written into the runs' folder."
        ),
    )
    parser.add_argument("sweep_dir", help="a multirun sweep directory, a folder of runs, or a single run directory")
    parser.add_argument("--out", default=None, help="write the report here instead of into sweep_dir")
    parser.add_argument(
        "--early-epoch", type=int, default=None, help="early sample grid epoch, 0-based (default: each run's first)"
    )
    parser.add_argument(
        "--late-epoch", type=int, default=None, help="late sample grid epoch, 0-based (default: each run's last)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        paths = report(args.sweep_dir, args.out, args.early_epoch, args.late_epoch)
    except DDPMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
