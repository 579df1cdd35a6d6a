"""``python -m ddpm_lightning.report``: a real 2×2 multirun → one table row per run and every figure;
metric keys picked up when logged and blank when not; single run / folder of runs; clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from ddpm_lightning.report import FIGURES, main, report
from ddpm_lightning.reporting.runs import event_dir, nearest_epoch, read_scalars
from tests.helpers.config import only_core_callbacks
from tests.helpers.run import DATA_DIR, run_module
from tests.helpers.run import TINY_SWEEP as TINY  # a run in a few seconds on CPU: tiny T, tiny CNN, 2 epochs


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    pixels = mpimg.imread(path)  # (H, W, 4) floats
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.01, f"{path} is blank"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2×2 multirun, schedule ∈ {linear, geometric} × lr ∈ {1e-3, 2e-4}, one job after another (Hydra's
    basic launcher; tests/test_multirun.py runs a sweep with the joblib one)."""
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"real MNIST files not found under {DATA_DIR}/MNIST/raw (set DDPM_DATA_DIR)")
    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "sweep"
    proc = run_module(
        "ddpm_lightning.train",
        "-m",
        "schedule=linear,geometric",
        "optimizer.lr=1e-3,2e-4",
        *TINY,
        *only_core_callbacks(),
        f"hydra.sweep.dir={out}",
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.e2e
def test_report_on_a_2x2_multirun(sweep: Path) -> None:
    proc = run_module(
        "ddpm_lightning.report", str(sweep), cwd=sweep.parent, warm=False
    )  # cold: a fresh interpreter, as a user starts it (one launch per entry point)
    assert proc.returncode == 0, proc.stderr[-3000:]

    table = pd.read_csv(sweep / "report.csv")
    assert len(table) == 4 and list(table["run"].astype(str)) == ["0", "1", "2", "3"]
    assert set(table["status"]) == {"ok"}
    assert set(table["overrides"]) == {
        f"schedule={s} optimizer.lr={lr}" for s in ("linear", "geometric") for lr in ("0.001", "0.0002")
    }
    assert list(table["schedule"]) == ["linear", "linear", "geometric", "geometric"]
    for _, row in table.iterrows():  # the table's numbers are the runs' own final metrics
        final = OmegaConf.load(Path(row["path"]) / "metrics.yaml")
        assert row["val/loss"] == pytest.approx(final["val/loss"])
        assert row["train_time_s"] == pytest.approx(final["train_time_s"]) and row["train_time_s"] > 0
    # CNN((8, 8)): two 7×7 conv blocks with LayerNorm over (C, 28, 28), a 3×3 out conv, a time MLP
    from ddpm_lightning.core.networks.cnn import CNN

    assert set(table["num_parameters"]) == {sum(p.numel() for p in CNN(channels=(8, 8)).parameters())}
    times = read_scalars(sweep / "0" / "tensorboard")["walltime/train_s"]  # lit/walltime.py, at each epoch end
    assert times[0] == [0, 1] and 0 < times[1][0] < times[1][1] <= table["train_time_s"][0]  # fit ⊂ train_time_s

    markdown = (sweep / "report.md").read_text()
    assert markdown.count("\n| ") == 5  # header + 4 runs (the separator row starts with "|---")
    assert "4 runs: 4 finished, 0 failed" in markdown
    assert "(nearest to" not in markdown  # default: each run's first and last grid (epochs 0 and 1)
    header = markdown.split("\n| ", 1)[1].split("\n")[0]  # headline columns only, none left blank by every run
    assert header.split(" | ")[:4] == ["run", "status", "overrides", "epochs"] and "parameters" not in header
    assert "FID" not in header  # no run logged a FID: no empty FID column (blank in report.csv)
    assert "Across seeds" not in markdown  # no two runs differ only in seed
    assert "`val/fid` was not logged by any run" in markdown  # said in the notes, and no empty panels:
    assert "fig_quality_compute.png: no run has an FID" in markdown
    assert mpimg.imread(sweep / "fig_fid.png").shape[1] < mpimg.imread(sweep / "fig_loss.png").shape[1]  # 1 vs 2 panels
    proc = run_module(
        "ddpm_lightning.report", str(sweep), "--early-epoch", "6", "--out", str(sweep.parent / "e6"), cwd=sweep.parent
    )
    assert (
        "run 0: early epoch 6 not available, showing epoch 1" in (sweep.parent / "e6" / "report.md").read_text()
    )  # said
    for name in FIGURES.values():
        assert f"({name})" in markdown
        assert_png(sweep / name)


@pytest.mark.e2e
def test_report_single_run_and_folder_of_runs(sweep: Path, tmp_path: Path) -> None:
    single = report(sweep / "2", out_dir=tmp_path / "single", early_epoch=0, late_epoch=1)
    table = pd.read_csv(single["csv"])
    assert len(table) == 1 and table["schedule"][0] == "geometric"
    assert "(nearest to" not in (tmp_path / "single" / "report.md").read_text()  # epochs 0 and 1 exist

    folder = tmp_path / "runs"
    (folder / "a").mkdir(parents=True)
    shutil.copytree(sweep / "0", folder / "a" / "first")
    shutil.copytree(sweep / "3", folder / "second")
    paths = report(folder)
    table = pd.read_csv(paths["csv"])
    assert sorted(table["run"]) == ["a/first", "second"]
    for key in FIGURES:
        assert_png(paths[key])


def _events(path: Path, tags: dict[str, list[float]], last: dict[str, float] | None = None) -> None:
    """Epoch-level scalars as Lightning writes them: value and ``epoch`` at each epoch's last step (``last``: at the
    last epoch's only, as final/* metrics are)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(path))
    epochs = len(next(iter(tags.values())))
    for epoch in range(epochs):
        step = 2 * epoch + 1
        writer.add_scalar("epoch", epoch, step)
        for tag, values in tags.items():
            writer.add_scalar(tag, values[epoch], step)
        for tag, value in (last or {}).items() if epoch == epochs - 1 else ():
            writer.add_scalar(tag, value, step)
        writer.add_scalar("epoch", epoch + 1, step)  # the next epoch's first batch can share the step
    writer.close()


@pytest.mark.e2e
def test_report_picks_up_metric_keys_when_logged(sweep: Path, tmp_path: Path) -> None:
    """Runs whose callbacks logged FID/KID/PSNR/SSIM (keys of the metric callbacks) fill those cells
    and curves; a run without them stays blank; an unknown val/* key gets its own column."""
    root = tmp_path / "sweep"
    shutil.copytree(sweep / "0", root / "0")
    shutil.copytree(sweep / "1", root / "1")
    logged = {
        "val/psnr": [9.5, 11.25],
        "val/ssim": [0.125, 0.375],
        "val/fid": [250.0, 120.5],
        "val/kid": [0.25, 0.0625],
        "val/fid_mnist": [80.0, 40.25],
        "val/kid_std": [0.01, 0.02],
    }
    _events(event_dir(root / "0" / "tensorboard"), logged)  # into the run's TensorBoard run, beside Lightning's
    final = OmegaConf.to_container(OmegaConf.load(root / "0" / "metrics.yaml"))
    final.update({k: v[-1] for k, v in logged.items() if k != "val/kid_std"})  # kid_std: last scalar
    (root / "0" / "metrics.yaml").write_text(OmegaConf.to_yaml(final))

    scalars = read_scalars(root / "0" / "tensorboard")
    assert scalars["val/psnr"] == ([0, 1], [9.5, 11.25])
    assert scalars["val/loss"][0] == [0, 1]  # Lightning's own events, same epochs

    paths = report(root)
    table = pd.read_csv(paths["csv"]).set_index("run")
    for key, values in logged.items():
        assert table.loc[0, key] == pytest.approx(values[-1])
        assert pd.isna(table.loc[1, key])
    markdown = paths["markdown"].read_text()
    assert "val/psnr` was not logged" not in markdown and "val/fid` was not logged" not in markdown
    assert "| 11.25 |" in markdown and "| 0.3750 |" in markdown  # PSNR, SSIM in the markdown table


@pytest.mark.e2e
def test_report_marks_incomplete_runs(sweep: Path, tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    shutil.copytree(sweep / "0", root / "0")
    shutil.copytree(sweep / "1", root / "1")
    (root / "1" / "metrics.yaml").unlink()  # killed before the end: no metrics, no FAILED marker
    table = pd.read_csv(report(root)["csv"])
    assert list(table["status"]) == ["ok", "incomplete"]
    assert table["val/loss"][1] == pytest.approx(read_scalars(root / "1" / "tensorboard")["val/loss"][1][-1])


@pytest.mark.e2e
def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = run_module("ddpm_lightning.report", str(tmp_path / "missing"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith(f"error: not a directory: {tmp_path / 'missing'}")
    assert main([str(tmp_path)]) == 2  # a directory without runs
    err = capsys.readouterr().err
    assert err.startswith(f"error: no runs under {tmp_path}") and err.strip().count("\n") == 0


def test_nearest_epoch() -> None:
    assert nearest_epoch([0, 1, 5, 10], 6) == 5
    assert nearest_epoch([0, 4, 8], 6) == 4  # tie -> the earlier epoch
    assert nearest_epoch([0, 1], 49) == 1
    assert nearest_epoch([], 3) is None


@pytest.mark.e2e
def test_report_aggregates_a_two_seed_tiny_study(tmp_path: Path) -> None:
    """experiment=study_seeds, two of its configurations × seeds 0, 1, tiny: the report shows mean ± interval
    per configuration beside the floor, and a ranking that says whether each gap exceeds the spread."""
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"real MNIST files not found under {DATA_DIR}/MNIST/raw (set DDPM_DATA_DIR)")
    out = tmp_path / "study"
    tiny = [
        *TINY,
        "trainer.max_epochs=1",  # the across-seeds table reads each run's final metrics
        "callbacks.generative_metrics.fid=false",
        "callbacks.generative_metrics.kid=false",
        "callbacks.generative_metrics.n=8",
        "callbacks.generative_metrics.psnr_references=8",
        "callbacks.denoising_metrics=null",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    proc = run_module(
        "ddpm_lightning.train",
        "experiment=study_seeds",
        "+experiment@_global_=study_linear,study_des",
        "seed=0,1",  # one job after another (Hydra's basic launcher)
        *tiny,
        f"hydra.sweep.dir={out}",
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = report(out)
    seeds = pd.read_csv(paths["seeds_csv"])
    assert sorted(seeds["configuration"]) == ["experiment=study_des", "experiment=study_linear"]
    assert set(seeds["seeds"]) == {"0 1"} and set(seeds["val/fid_mnist n"]) == {2}
    assert (seeds["val/fid_mnist ±"] > 0).all() and (seeds["val/fid_mnist_floor mean"] > 0).all()
    markdown = paths["markdown"].read_text()
    assert "## Across seeds" in markdown and "FID (MNIST clf.) floor" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| experiment=study_linear | 0 1 |"))
    assert " ± " in row
    ranking = [line for line in markdown.splitlines() if line.startswith(("1. experiment=", "2. experiment="))]
    assert len(ranking) == 2 and ("larger than the spread" in ranking[1] or "within the spread" in ranking[1])
    assert "| clf. FID floor |" in markdown.split("## Across seeds")[0]  # the per-run table: score beside floor


def _fake_run(path: Path, override: str, logged: dict[str, list[float]], **final: float) -> Path:
    """A finished run's files as the report reads them, without training: config, overrides, metrics.yaml, events."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml({"trainer": {"max_epochs": 3}}))
    (path / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml([override]))
    (path / "metrics.yaml").write_text(OmegaConf.to_yaml({"val/loss": 0.1, **final}))
    last = {k: final[k] for k in final if k.startswith("final/")}
    epochs = len(next(iter(logged.values())))
    _events(path / "tensorboard" / override, {"val/loss": [0.1] * epochs, **logged}, last)
    return path


def _plotted(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, list[list[float]]]]:
    """What the quality-vs-compute figure draws, read back from its axes before it is saved:
    {panel title: {line label: [x values, y values, epoch annotations]}}."""
    from matplotlib.text import Annotation

    from ddpm_lightning.reporting import quality_compute

    seen: dict[str, dict[str, list[list[float]]]] = {}
    save = quality_compute._save

    def read_back(fig: Any, path: Path) -> Path:
        for ax in fig.axes:
            notes = [float(t.get_text()) for t in ax.texts if isinstance(t, Annotation)]  # epochs, point by point
            lines = seen.setdefault(ax.get_title(), {})
            for line in ax.lines:
                xs, ys = [float(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()]
                lines[line.get_label()] = [xs, ys, notes[: len(xs)]]
                notes = notes[len(xs) :]
        return save(fig, path)

    monkeypatch.setattr(quality_compute, "_save", read_back)
    return seen


def test_quality_compute_figure_plots_fid_at_the_logged_training_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-epoch val/fid_mnist at the walltime/train_s the run logged (in minutes), the final/* point as a star;
    no val/fid logged: no Inception panel."""
    logged = {"val/fid_mnist": [80.0, 40.0, 20.0], "walltime/train_s": [30.0, 90.0, 150.0]}
    _fake_run(tmp_path / "runs" / "0", "schedule=linear", logged, train_time_s=200.0, **{"final/fid_mnist": 16.0})
    _fake_run(
        tmp_path / "runs" / "1",
        "schedule=cosine",
        {"val/fid_mnist": [90.0, 60.0, 50.0], "walltime/train_s": [60.0, 120.0, 180.0]},
    )
    plotted = _plotted(monkeypatch)
    paths = report(tmp_path / "runs")
    assert list(plotted) == ["classifier FID (labels: epochs)"]  # one panel: no run logged val/fid or final/fid
    lines = plotted["classifier FID (labels: epochs)"]
    assert lines["0: schedule=linear"] == [[0.5, 1.5, 2.5], [80.0, 40.0, 20.0], [1.0, 2.0, 3.0]]  # minutes; epochs
    assert lines["0: schedule=linear: final/*"] == [[2.5], [16.0], [3.0]]  # the last epoch's, not train_time_s
    assert lines["1: schedule=cosine"][0] == [1.0, 2.0, 3.0]
    assert_png(paths["quality_compute"])
    markdown = paths["markdown"].read_text()
    assert "(fig_quality_compute.png)" in markdown and "(an older run)" not in markdown


def test_quality_compute_figure_spreads_train_time_s_of_an_older_run_and_notes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run without walltime/train_s: its metrics.yaml train_time_s spread evenly over its epochs, said in the
    legend and the notes; a run without any FID is left out; no FID in any run: an empty panel and a note."""
    _fake_run(tmp_path / "runs" / "old", "schedule=linear", {"val/fid_mnist": [100.0, 60.0]}, train_time_s=240.0)
    _fake_run(tmp_path / "runs" / "nofid", "schedule=cosine", {"val/psnr": [9.0, 10.0]}, train_time_s=60.0)
    plotted = _plotted(monkeypatch)
    paths = report(tmp_path / "runs")
    lines = plotted["classifier FID (labels: epochs)"]
    assert list(lines) == ["old: schedule=linear (time spread evenly)"]
    assert lines["old: schedule=linear (time spread evenly)"] == [[2.0, 4.0], [100.0, 60.0], [1.0, 2.0]]  # 240 s / 2
    markdown = paths["markdown"].read_text()
    assert "run old: no `walltime/train_s` logged (an older run): its train_time_s (240 s) spread evenly" in markdown

    plotted.clear()
    paths = report(tmp_path / "runs" / "nofid", out_dir=tmp_path / "none")
    assert plotted == {"": {}}  # one empty panel
    assert "fig_quality_compute.png: no run has an FID" in paths["markdown"].read_text()
    assert_png(paths["quality_compute"])
