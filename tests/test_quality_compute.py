"""reporting/quality_compute.py: FID and classifier FID of evaluated checkpoints against training time / epochs."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import torch

from ddpm_lightning.reporting.quality_compute import QualityPoint, plot_quality_vs_compute, quality_point


def test_point_reads_the_checkpoint_epochs_and_the_metrics(tmp_path: Path) -> None:
    ckpt = tmp_path / "epoch_003.ckpt"
    torch.save({"epoch": 3, "global_step": 1872}, ckpt)
    out = tmp_path / "metrics.json"
    settings = {"checkpoint": str(ckpt), "samples": {"sampler": {"name": "dpm_solver", "steps": 50}}}
    out.write_text(json.dumps({"metrics": {"fid_mnist": 7.5, "fid": 20.0}, "settings": settings}))
    p = quality_point(out, label="best")
    assert (p.label, p.epochs, p.steps, p.sampler) == ("best", 4.0, 1872, "dpm_solver-50")
    assert p.metrics["fid_mnist"] == 7.5


def test_figure_has_a_panel_per_metric_and_notes_a_missing_one(tmp_path: Path) -> None:
    points = [QualityPoint("best", e, e * 468, {"fid_mnist": 40.0 / e}) for e in (1, 2, 4)] + [
        QualityPoint("baseline", e, e * 468, {"fid_mnist": 80.0 / e}) for e in (2, 4)
    ]
    path = tmp_path / "q.png"
    notes = plot_quality_vs_compute(points, path, s_per_epoch={"best": 90.0, "baseline": 60.0})
    assert notes == ["q.png: no point has `fid`"]
    assert mpimg.imread(path).shape[1] < 800  # one panel (classifier FID) only
    wide = tmp_path / "both.png"
    both = [QualityPoint("best", 1, 468, {"fid_mnist": 9.0, "fid": 30.0})]
    assert plot_quality_vs_compute(both, wide) == [] and mpimg.imread(wide).shape[1] > 1000  # two panels
