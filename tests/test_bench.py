"""The benchmark script end to end with tiny settings (``--smoke``): every section, finite numbers, targets."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.gpu_study import project
from benchmarks.gpu_study import targets as gpu_targets
from benchmarks.report import targets
from tests.helpers.run import run_cli

SECTIONS = ("meta", "training", "overhead", "sampling", "evaluation", "capacity", "speed_options", "targets")


def _numbers(x, path="") -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    if isinstance(x, dict):
        return [n for k, v in x.items() for n in _numbers(v, f"{path}.{k}")]
    if isinstance(x, list):
        return [n for i, v in enumerate(x) for n in _numbers(v, f"{path}[{i}]")]
    return [(path, float(x))] if isinstance(x, (int, float)) and not isinstance(x, bool) else []


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    # warm (tests/helpers/zygote.py: the imports paid once per session), with the suite's one OpenMP thread
    # (tests/conftest.py): section 6's threads=1 row, timed only when torch has more than one thread, is left out
    proc = run_cli("benchmarks.bench", "--smoke", "--device", "cpu", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "latest_cpu_smoke.json").read_text()), (out / "latest_cpu_smoke.md").read_text()


@pytest.mark.e2e
def test_every_section_with_finite_numbers(smoke: tuple[dict, str]) -> None:
    r, md = smoke
    assert all(k in r for k in SECTIONS)
    assert r["meta"]["smoke"] and len(r["meta"]["load_average_start"]) == 3
    tr = r["training"]
    assert set(tr["images_per_s"]) == {"bare", "lightning", "lightning_synthetic"}
    rows = r["sampling"]["samplers"]
    expected = {
        "ancestral_20",
        "ddim_5",
        "ddim_10",
        "ddim_5_eta1",
        "ddim_5_quadratic",
        "ddim_5_quadratic_eta1",
        "dpm_solver_5",
        "dpm_solver_10",
        "dpm_solver_5_ode",
    }
    if r["sampling"]["precision"] != "32-true":  # the preset samples in bf16: one more row shows float32
        expected.add("ddim_5_float32")
        assert (
            rows["ddim_5_float32"]["precision"] == "32-true"
            and rows["ddim_5"]["precision"] == r["sampling"]["precision"]
        )
    assert expected == set(rows)
    for name, row in rows.items():
        lo, hi = row.get("fid_ratio_interval_90", (1.0, 1.0))
        assert 0 < lo <= hi and (not name.startswith("ancestral") or lo == hi == 1.0), (name, lo, hi)
    assert {(x["model"], x["capacity"]) for x in r["capacity"]["rows"]} == {
        ("cnn", "small"),
        ("cnn", "large"),
        ("unet", "small"),
        ("unet", "large"),
    }
    assert r["capacity"]["rows"][1]["flops_per_step"] > 10 * r["capacity"]["rows"][0]["flops_per_step"]  # large ≫ small
    assert "preset" in r["speed_options"]["images_per_s"] and "channels_last" in r["speed_options"]["images_per_s"]
    costs = r["evaluation"]["costs"]
    assert costs["classifier_fid"]["fraction_of_epoch"] > 0 and "skipped" in costs["inception_fid"]["unavailable"]
    skipped = {".evaluation.costs.inception_fid.seconds", ".speed_options.compile_warmup_s"}  # None in smoke runs
    nums = dict(_numbers(r))
    assert len(nums) > 50
    bad = [k for k, v in nums.items() if not math.isfinite(v)]
    assert not bad, bad
    for key in ("training", "sampling", "evaluation", "capacity"):
        assert all(
            v > 0 for k, v in _numbers(r[key]) if "images_per_s" in k or k.endswith("seconds") or "step_s" in k
        ), key
    assert not [k for k in skipped if k in nums]
    assert {row["steps"] for name, row in rows.items() if name.startswith(("ddim_5", "dpm_solver_5"))} == {5}
    assert len(r["targets"]) == 8 and all(t["result"] in ("PASS", "FAIL") for t in r["targets"])
    assert "## Targets" in md and "SMOKE" in md and md.count("| **PASS** |") + md.count("| **FAIL** |") == 8
    hs = r["host_syncs"]  # the default callbacks read nothing from the device in a steady step
    assert hs["steps"] == 24 and hs["steady_steps"] > 0 and hs["reads_per_steady_step"] == 0, hs


def test_targets_are_judged_on_the_measured_numbers() -> None:
    r = {
        "meta": {"device": "cpu"},
        "training": {"lightning_vs_bare": {"median": 0.94}, "data_vs_synthetic": {"median": 0.99}},
        "sampling": {
            "samplers": {
                "ancestral_1000": {},
                "ddim_50": {"speedup_vs_ancestral": 19.7, "fid_ratio_vs_ancestral": 1.12},
                "dpm_solver_50": {"speedup_vs_ancestral": 14.0, "fid_ratio_vs_ancestral": 1.08},
            }
        },
        "evaluation": {"costs": {"classifier_fid": {"fraction_of_epoch": 0.001}}},
    }
    got = [t["result"] for t in targets(r)]
    assert got == ["FAIL", "PASS", "PASS", "FAIL", "FAIL", "PASS", "PASS", "not run (--sections)"]
    r["host_syncs"] = {"reads_per_steady_step": 1}
    assert targets(r)[7]["result"] == "FAIL"
    assert "dpm_solver_50 classifier FID" in targets(r)[5]["target"]
    r["meta"]["device"] = "cuda"  # the CPU-only targets become information on a GPU
    assert [t["result"] for t in targets(r)][0] == "info (CPU target)"
    r["training"]["lightning_vs_bare"]["median"] = float("nan")
    r["meta"]["device"] = "cpu"
    assert targets(r)[0]["result"] == "FAIL"  # a missing measurement never passes


def test_gpu_study_projection() -> None:
    """Both studies from one study_fast job: the last epoch's final/* evaluation is the study's protocol."""
    times = {"walltime/generate_s": 1.0, "walltime/classifier_s": 0.5}  # the 50-call per-epoch metrics: 1.5 s
    times |= {"walltime/final_generate_s": 9.0, "walltime/final_inception_s": 1.0}  # the protocol: 10 s
    times |= {"walltime/final_n10000_generate_s": 4.0}
    rows = [
        {"epoch_s": 30.0, "train_s": 10.0, "metric_times": {"walltime/generate_s": 1.0, "walltime/classifier_s": 0.5}},
        {"epoch_s": 12.0 + 1.5 + 10.0 + 4.0, "train_s": 9.0, "metric_times": times},  # base epoch 12 s
    ]
    p = project(rows, startup_s=20.0, epochs=50)
    assert p["base_epoch_s"] == 12.0 and p["protocol_metrics_s"] == 10.0 and p["fast_metrics_s"] == 1.5
    extra = 30.0 - 13.5  # the first epoch's warm-up
    assert p["projected_s"] == pytest.approx(20 + extra + 50 * 22.0)
    assert p["projected_fast_s"] == pytest.approx(20 + extra + 50 * 13.5 + 10.0 + 4.0)
    assert project(rows[:1], 5.0)["projected_s"] is None  # stopped before the last epoch: no protocol measured
    assert project([], 5.0)["projected_fast_s"] is None
    runs = [{"run": "study_linear", "protocol_metrics_s": 2.0, "projected_s": 600.0, "projected_fast_s": 100.0}]
    runs.append({"run": "study_large", "protocol_metrics_s": None, "projected_s": None, "projected_fast_s": None})
    bench = {"training": {"lightning_vs_bare": {"median": 0.97}}, "host_syncs": {"reads_per_steady_step": 0}}
    got = {t["target"].split(",")[0]: t["result"] for t in gpu_targets(bench, runs)}
    assert got["Lightning / bare loop"] == "PASS" and got["host syncs per steady training step"] == "PASS"
    assert got["data path / synthetic tensors"] == "FAIL"  # not measured: a missing number never passes
    assert got["per-epoch metrics at the study's protocol"] == "FAIL"  # the large run measured none
    assert [t["result"] for t in gpu_targets(bench, runs)][4] == "PASS"  # small CNN: 2 s <= 3 s


def test_speed_options_change_speed_not_results(data_dir: Path) -> None:
    """The data module's batches (one gather per batch, host or device memory) equal a plain
    TensorDataset DataLoader's with the same sampler, epoch by epoch;
    module.channels_last computes the same network; the default preset (speed=auto) picks per device;
    speed=exact is the study's float32."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from ddpm_lightning.build import build_module
    from ddpm_lightning.cli import _compose
    from ddpm_lightning.lit.data import BatchTensorDataset, EpochSeededSampler, MNISTDataModule

    dms = [
        MNISTDataModule(root=str(data_dir), batch_size=32, train_subset=96, val_subset=40, download=False, on_device=d)
        for d in (False, True)
    ]
    for dm in dms:
        dm.setup()
    assert all(isinstance(dm.train_set, BatchTensorDataset) for dm in dms)
    plain_set = TensorDataset(*dms[0].train_set.tensors)
    for epoch in (0, 1):
        loaders = [dm.train_dataloader() for dm in dms]
        plain_sampler = EpochSeededSampler(plain_set, seed=0)
        plain_sampler.set_epoch(epoch)
        loaders.append(
            DataLoader(plain_set, batch_size=32, sampler=plain_sampler, drop_last=True)
        )  # item reads + stack
        for loader in loaders[:2]:
            loader.sampler.set_epoch(epoch)
        batches = list(zip(*loaders))
        assert len(batches) == 3
        assert all(
            torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]) and torch.equal(b[0], c[0]) for a, b, c in batches
        )
    val = [torch.cat([b[0] for b in dm.val_dataloader()]) for dm in dms]
    assert torch.equal(val[0], val[1]) and torch.equal(val[0], dms[0].val_images) and val[1].shape == (40, 1, 28, 28)

    cfg = _compose("train", ["T=20"])
    torch.manual_seed(0)
    plain = build_module(cfg)
    torch.manual_seed(0)
    fast = build_module(_compose("train", ["T=20", "module.channels_last=true"]))
    assert fast.network.blocks[1].conv.weight.is_contiguous(memory_format=torch.channels_last)
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([1, 5, 10, 20])
    assert torch.allclose(plain(x, t), fast(x, t), atol=1e-5)
    exact = _compose("train", ["speed=exact"])
    assert (
        exact.trainer.precision == "32-true"
        and not exact.module.compile
        and not exact.data.on_device
        and exact.threads is None
    )
    assert not cfg.module.compile and not cfg.module.channels_last and cfg.threads is None
    cpu, gpu = _compose("train", ["speed=cpu"]), _compose("train", ["speed=gpu"])
    assert (cpu.trainer.accelerator, cpu.data.on_device) == ("cpu", False)  # precision: as speed=auto (next test)
    assert (gpu.trainer.accelerator, gpu.trainer.precision, gpu.data.on_device) == ("gpu", "32-true", True)
    assert gpu.float32_matmul_precision == "high" and cpu.float32_matmul_precision is exact.float32_matmul_precision


def test_speed_auto_resolves_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """speed=auto (the default) and speed=cpu: bf16 on CPUs with native bf16 else float32, host data; on a
    GPU float32 with TF32 for networks up to 64 channels wide, else bf16 (16-mixed without bf16), and the
    data on the device; an explicit override still wins."""
    import torch

    from ddpm_lightning import speed
    from ddpm_lightning.cli import _compose
    from ddpm_lightning.core.errors import DDPMError

    composed: dict[tuple[str, ...], Any] = {}

    def cfg_of(*overrides: str) -> Any:
        """Each override set composed once: the speed_auto resolver runs at every access, so under each patch."""
        if overrides not in composed:
            composed[overrides] = _compose("train", list(overrides))
        return composed[overrides]

    def resolved(*overrides: str) -> tuple[str, bool]:
        cfg = cfg_of(*overrides)
        return cfg.trainer.precision, cfg.data.on_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, precision in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda native=native: native)
        assert resolved() == resolved("trainer=cpu") == resolved("speed=cpu") == (precision, False)
    assert resolved("trainer.precision=32-true") == ("32-true", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for bf16, precision in ((True, "bf16-mixed"), (False, "16-mixed")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda bf16=bf16: bf16)
        # per network width (H200: the study's small CNN x1.19 faster in float32/TF32 than in bf16)
        assert resolved() == resolved("trainer=gpu") == resolved("capacity=small", "model=unet") == ("32-true", True)
        assert resolved("capacity=large") == resolved("trainer=gpu", "capacity=large") == (precision, True)
        assert resolved("capacity.channels=[16,128]") == (precision, True)  # one wide layer: bf16
        assert cfg_of("speed=gpu", "capacity=large").trainer.precision == precision
        assert cfg_of("experiment=study_large").trainer.precision == precision
        assert cfg_of().float32_matmul_precision == "high"
    assert resolved("data.num_workers=4") == ("32-true", False)  # workers asked for: the data stays on the host
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: True)
    assert resolved("trainer=cpu") == ("bf16-mixed", False)  # a GPU present but not used
    assert cfg_of("trainer=cpu").float32_matmul_precision is None  # CPU numerics unchanged
    with pytest.raises(
        DDPMError, match="unknown speed option 'threads'; valid choices: precision, on_device, float32_matmul_precision"
    ):
        speed.auto_option("cpu", "threads")
