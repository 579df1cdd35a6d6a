"""The per-run table of final metrics (pandas DataFrame → CSV and a markdown table).

Metric columns are fixed so that tables from different sweeps line up; a metric no run logged is a
blank cell, and any other ``val/*`` metric some run logged is appended after them. The CSV has every
column; the markdown table only the headline ones (``HEADLINE``: each score beside its real-vs-real floor),
without columns no run filled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from ddpm_lightning.reporting.runs import Run, varying_overrides

# (key in metrics.yaml / TensorBoard, markdown header, format)
METRICS: list[tuple[str, str, str]] = [
    ("val/fid", "FID", "{:.2f}"),
    ("val/fid_floor", "FID floor", "{:.2f}"),
    ("val/kid", "KID", "{:.4f}"),
    ("val/fid_mnist", "FID (MNIST clf.)", "{:.2f}"),
    ("val/fid_mnist_floor", "clf. FID floor", "{:.2f}"),
    ("val/psnr", "PSNR (dB)", "{:.2f}"),
    ("val/ssim", "SSIM", "{:.4f}"),
    ("val/loss", "val loss", "{:.4f}"),
    ("num_parameters", "parameters", "{:,.0f}"),
    ("train_time_s", "train time (s)", "{:.1f}"),
]
DESCRIPTION: list[tuple[str, str]] = [
    ("run", "run"),
    ("status", "status"),
    ("overrides", "overrides"),
    ("schedule", "schedule"),
    ("capacity", "capacity"),
    ("degradation", "degradation"),
    ("T", "T"),
    ("epochs", "epochs"),
]
# The markdown table's columns (the CSV has all): what tells runs apart, then the scores beside their floors.
HEADLINE = [
    "run",
    "status",
    "overrides",
    "epochs",
    "val/fid",
    "val/fid_floor",
    "val/fid_mnist",
    "val/fid_mnist_floor",
    "val/kid",
    "val/psnr",
    "val/ssim",
    "val/loss",
]


def _select(run: Run, key: str) -> Any:
    return OmegaConf.select(run.config, key, default=None, throw_on_resolution_failure=False)


def _target_name(run: Run, group: str) -> str | None:
    target = _select(run, f"{group}._target_")
    return str(target).rsplit(".", 1)[-1] if target else None


def extra_metrics(runs: list[Run]) -> list[str]:
    """``val/*`` keys some run has, beyond the fixed columns (e.g. a KID standard deviation)."""
    known = {k for k, _, _ in METRICS}
    keys = {k for r in runs if r.status != "failed" for k in (*r.final, *r.scalars)}
    return sorted(k for k in keys if k.startswith("val/") and k not in known)


def build_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: description, status, final metrics (None where not logged or failed)."""
    varying = varying_overrides(runs)
    metric_keys = [k for k, _, _ in METRICS] + extra_metrics(runs)
    rows = []
    for run in runs:
        channels = _select(run, "capacity.channels")
        capacity = run.choices.get("capacity", "")
        if channels is not None:
            capacity = f"{capacity} {list(channels)}".strip()
        row: dict[str, Any] = {
            "run": run.name,
            "status": run.status,
            "overrides": " ".join(varying[run.name]),
            "schedule": run.choices.get("schedule") or _target_name(run, "schedule"),
            "capacity": capacity,
            "degradation": run.choices.get("degradation") or _target_name(run, "degradation"),
            "T": _select(run, "T"),
            "epochs": _select(run, "trainer.max_epochs"),
        }
        row.update({k: run.value(k) for k in metric_keys})
        row["error"] = run.error
        row["path"] = str(run.path)
        rows.append(row)
    return pd.DataFrame(rows, columns=[k for k, _ in DESCRIPTION] + metric_keys + ["error", "path"])


def _cell(value: Any, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and fmt is None and value.is_integer():
        value = int(value)  # a pandas column with blanks turns ints into floats
    text = fmt.format(value) if fmt is not None and isinstance(value, (int, float)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``build_table``'s headline columns that some run filled."""
    formats = {k: (h, f) for k, h, f in METRICS}
    cols = [
        c for c in HEADLINE if c in table.columns and (c in ("run", "status", "overrides") or table[c].notna().any())
    ]
    headers = [dict(DESCRIPTION).get(c) or formats.get(c, (c, ""))[0] for c in cols]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            fmt = formats[c][1] if c in formats else ("{:.4g}" if c.startswith("val/") else None)
            text = _cell(row[c], fmt)
            cells.append(f"**{text}**" if c == "status" and text != "ok" else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(table: pd.DataFrame, out_dir: Path) -> tuple[Path, str]:
    """Write ``report.csv``; return its path and the markdown table."""
    csv = out_dir / "report.csv"
    table.to_csv(csv, index=False)
    return csv, to_markdown(table)
