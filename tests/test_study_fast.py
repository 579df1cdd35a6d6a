"""experiment=study_fast: the study's five runs and training, per-epoch metrics from a 50-call sampler, the
study's protocol (ancestral, N = 1000) and FID / classifier FID at N = 10,000 at the last epoch only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddpm_lightning.cli import CONF_DIR, _compose
from ddpm_lightning.reporting.runs import event_dir
from tests.helpers.run import TINY, run_cli

RUNS = ("study_linear", "study_geometric", "study_custom", "study_large", "study_des")


def _job(name: str, *extra: str):  # type: ignore[no-untyped-def]
    """One job of the sweep: the sweeper adds its params (+experiment@_global_, callbacks) as overrides."""
    return _compose(
        "train", ["experiment=study_fast", f"+experiment@_global_={name}", "callbacks=metrics_fast", *extra]
    )


def test_study_fast_composes_the_study_with_fast_per_epoch_and_final_metrics() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        fast = compose(config_name="train", overrides=["experiment=study_fast"], return_hydra_config=True)
        study = compose(config_name="train", overrides=["experiment=study"], return_hydra_config=True)
    params = fast.hydra.sweeper.params
    assert params["+experiment@_global_"] == study.hydra.sweeper.params["+experiment@_global_"]
    assert set(params["+experiment@_global_"].split(",")) == set(RUNS) and params["callbacks"] == "metrics_fast"
    for name in RUNS:
        job, ref = _job(name), _compose("train", ["experiment=study", f"+experiment@_global_={name}"])
        for key in ("module", "optimizer", "data", "trainer", "schedule", "degradation", "capacity", "model"):
            assert OmegaConf.to_container(job[key]) == OmegaConf.to_container(ref[key]), (name, key)  # same training
        assert (job.seed, job.T, job.sampler) == (ref.seed, ref.T, ref.sampler)
        per_epoch, final, big = (
            job.callbacks[k] for k in ("generative_metrics", "final_metrics", "final_metrics_n10000")
        )
        assert ref.callbacks.generative_metrics.sampler is None and job.sampler._target_.endswith("Ancestral")
        assert per_epoch.sampler._target_.endswith("DPMSolver") and per_epoch.sampler.num_steps <= 50
        assert per_epoch.n == final.n == 1000 and per_epoch.every_n_epochs == 1 and not per_epoch.get("last_epoch_only")
        for node in (per_epoch, final):  # the study's metrics
            assert node.fid and node.kid and node.fid_mnist and node.psnr_ssim and node.split == "test"
        assert final.last_epoch_only and final.sampler is None and final.prefix == "final"  # the module's: ancestral
        assert big.last_epoch_only and big.n == 10000 and big.fid and big.fid_mnist and big.split == "test"
        assert big.prefix == "final_n10000" and big.sampler == per_epoch.sampler  # 10,000 samples: 50 calls each
        assert {k for k in ref.callbacks if ref.callbacks[k] is not None} | {
            "final_metrics",
            "final_metrics_n10000",
        } == {k for k in job.callbacks if job.callbacks[k] is not None}


@pytest.mark.e2e
def test_study_fast_logs_per_epoch_and_final_metrics_with_their_protocol(tmp_path: Path, data_dir: Path) -> None:
    """A tiny study_linear job of study_fast, 2 epochs: val/* at both, final/* and final_n10000/* at the last
    only, each with its N and sampler in the TensorBoard text and the final values in metrics.yaml."""
    sweep, g, f, b = (
        tmp_path / "sweep",
        "callbacks.generative_metrics",
        "callbacks.final_metrics",
        "callbacks.final_metrics_n10000",
    )
    proc = run_cli(
        "ddpm_lightning.train",
        "experiment=study_fast",
        "+experiment@_global_=study_linear",  # one job of the sweep, as the sweeper runs it
        "callbacks=metrics_fast",
        *TINY,
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
        f"{g}.sampler.num_steps=5",
        *[f"{node}.{k}=false" for node in (g, f, b) for k in ("fid", "kid", "floors")],  # no Inception on CPU
        f"{f}.n=8",
        f"{f}.psnr_references=8",
        f"{b}.n=12",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()]
    acc = EventAccumulator(str(event_dir(run / "tensorboard")), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    steps = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert len(steps["val/fid_mnist"]) == 2 and len(steps["val/psnr"]) == 2
    assert len(steps["final/fid_mnist"]) == len(steps["final/psnr"]) == len(steps["final_n10000/fid_mnist"]) == 1
    assert steps["final/fid_mnist"] == steps["final_n10000/fid_mnist"] == steps["val/fid_mnist"][-1:]
    assert "final_n10000/psnr" not in steps and "walltime/final_generate_s" in steps

    def settings(tag: str) -> dict:
        text = acc.Tensors(f"metrics/{tag}/text_summary")[0].tensor_proto.string_val[0].decode()
        return json.loads(text.strip().strip("`"))

    per_epoch, final, big = settings("generative"), settings("final"), settings("final_n10000")
    assert per_epoch["samples"]["n_generated"] == 8 and per_epoch["samples"]["sampler"]["name"] == "dpm_solver"
    assert per_epoch["samples"]["sampler"]["steps"] == 5
    assert final["samples"]["n_generated"] == 8 and final["samples"]["sampler"]["steps"] == 20  # ancestral, all T
    assert big["samples"]["n_generated"] == 12 and big["real"] == {"split": "test", "n_real": 12}
    assert big["samples"]["sampler"]["name"] == "dpm_solver" and big["samples"]["sampler"]["steps"] == 5
    metrics = OmegaConf.load(run / "metrics.yaml")
    assert {"val/fid_mnist", "final/fid_mnist", "final/ssim", "final_n10000/fid_mnist"} <= set(metrics)
