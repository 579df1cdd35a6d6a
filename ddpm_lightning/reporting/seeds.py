"""Runs that differ only in ``seed``, aggregated: mean ± 95 % interval per configuration, and a ranking
that says which differences are larger than that spread.

The interval is the Student-t 95 % confidence interval of the mean over the k seeds,
mean ± t_{0.975, k−1} · sd / √k (sd with k − 1 in the denominator): wide with few seeds, as it should be.
Two configurations are told apart when their intervals do not overlap.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ddpm_lightning.reporting.runs import Run, _simplify, varying_overrides

# Metrics aggregated over seeds: (key, header, format); the ranking uses the first one logged.
AGGREGATED: list[tuple[str, str, str]] = [
    ("val/fid", "FID", "{:.2f}"),
    ("val/fid_mnist", "FID (MNIST clf.)", "{:.2f}"),
    ("val/kid", "KID", "{:.4f}"),
    ("val/loss", "val loss", "{:.4f}"),
]
FLOORS = {"val/fid": "val/fid_floor", "val/fid_mnist": "val/fid_mnist_floor"}


def configuration(overrides: list[str]) -> str:
    """Overrides without ``seed=...``: what the runs of one configuration share."""
    return " ".join(o for o in map(_simplify, overrides) if not o.startswith("seed=")) or "(no overrides)"


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t interval of the mean); half-width nan for one value."""
    k = len(values)
    mean = sum(values) / k
    if k < 2:
        return mean, math.nan
    from scipy import stats  # here: scipy.stats costs ~1.5 s of every report's start-up, needed only with seeds

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    return mean, float(stats.t.ppf(0.975, k - 1)) * sd / math.sqrt(k)


def aggregate(runs: list[Run]) -> pd.DataFrame:
    """One row per configuration with at least one finished run: seeds, and per metric mean, half-width,
    the number of runs that logged it, and the mean floor. Empty when no configuration has two seeds."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.status == "ok":
            groups.setdefault(configuration(run.overrides), []).append(run)
    if not any(len(g) > 1 for g in groups.values()):
        return pd.DataFrame()
    varying = varying_overrides(runs)  # shown: what tells the configurations apart
    rows = []
    for members in groups.values():
        row: dict[str, object] = {
            "configuration": configuration(varying[members[0].name]),
            "seeds": " ".join(str(r.config.get("seed")) for r in members),
        }
        for key, _, _ in AGGREGATED:
            values = [v for v in (r.value(key) for r in members) if v is not None and not math.isnan(v)]
            mean, half = interval(values) if values else (math.nan, math.nan)
            row[f"{key} mean"], row[f"{key} ±"], row[f"{key} n"] = mean, half, len(values)
            if key in FLOORS:
                floors = [v for v in (r.value(FLOORS[key]) for r in members) if v is not None]
                row[f"{FLOORS[key]} mean"] = sum(floors) / len(floors) if floors else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def ranking_key(table: pd.DataFrame) -> str | None:
    for key, _, _ in AGGREGATED:
        if f"{key} mean" in table and table[f"{key} mean"].notna().any():
            return key
    return None


def markdown(table: pd.DataFrame) -> list[str]:
    """The 'Across seeds' section: the aggregated table and the ranking with its verdicts."""
    if table.empty:
        return []
    keys = [(k, h, f) for k, h, f in AGGREGATED if table[f"{k} mean"].notna().any()]
    headers = ["configuration", "seeds"]
    for key, header, _ in keys:
        headers.append(f"{header} (mean ± 95 %)")
        if key in FLOORS:
            headers.append(f"{header} floor")
    lines = [
        "## Across seeds",
        "",
        "Runs that differ only in `seed`, per configuration: mean ± the 95 % t-interval of the mean over the seeds "
        "(`report_seeds.csv`); floors: the same FID between two disjoint real sets (train vs test) at the same N.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for _, row in table.iterrows():
        cells = [str(row["configuration"]), str(row["seeds"])]
        for key, _, fmt in keys:
            mean, half = row[f"{key} mean"], row[f"{key} ±"]
            cells.append(
                "" if math.isnan(mean) else fmt.format(mean) + ("" if math.isnan(half) else " ± " + fmt.format(half))
            )
            if key in FLOORS:
                floor = row[f"{FLOORS[key]} mean"]
                cells.append("" if math.isnan(floor) else fmt.format(floor))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    key = ranking_key(table)
    if key is not None:
        ranked = table[table[f"{key} mean"].notna()].sort_values(f"{key} mean")
        fmt = dict((k, f) for k, _, f in AGGREGATED)[key]
        lines += [
            "",
            f"Ranking by `{key}` (lower is better); a difference counts when the two intervals do not overlap:",
            "",
        ]
        prev = None
        for i, (_, row) in enumerate(ranked.iterrows(), 1):
            text = f"{i}. {row['configuration']}: {fmt.format(row[f'{key} mean'])}"
            if prev is not None:
                gap = row[f"{key} mean"] - prev[f"{key} mean"]
                spread = row[f"{key} ±"] + prev[f"{key} ±"]
                if math.isnan(spread):
                    verdict = "spread unknown (one seed)"
                elif gap > spread:
                    verdict = "larger than the spread"
                else:
                    verdict = "within the spread: not distinguishable"
                text += f" (+{fmt.format(gap)} over the one above: {verdict})"
            lines.append(text)
            prev = row
    return lines + [""]


def write(table: pd.DataFrame, out_dir: Path) -> Path | None:
    if table.empty:
        return None
    path = out_dir / "report_seeds.csv"
    table.to_csv(path, index=False)
    return path
