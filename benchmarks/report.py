"""The benchmark's targets (PASS/FAIL with the measured number) and its markdown table."""

from __future__ import annotations

import math
from typing import Any


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _interval(iv: list[float] | None) -> str:
    return "" if not iv else f"{_f(iv[0])} – {_f(iv[1])}"


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets. CPU-only targets are still reported on a GPU, marked 'info'."""
    cpu = r["meta"]["device"] == "cpu"
    s = r.get("sampling") or {}
    rows = s.get("samplers", {})
    anc = next((k for k in rows if k.startswith("ancestral")), "ancestral")
    ddim = next((k for k in rows if k.startswith("ddim")), "ddim")
    dpm = next((k for k in rows if k.startswith("dpm_solver")), "dpm_solver")
    out = [
        (
            "Lightning path vs bare PyTorch loop (images/s ratio, median)",
            _get(r, "training", "lightning_vs_bare", "median"),
            ">=",
            0.95,
            cpu,
        ),
        (
            "data path: real MNIST data module vs synthetic tensors (ratio)",
            _get(r, "training", "data_vs_synthetic", "median"),
            ">=",
            0.98,
            True,
        ),
        (f"{ddim} speed-up over {anc} (images/s ratio)", _get(rows, ddim, "speedup_vs_ancestral"), ">=", 15.0, True),
        (
            f"{ddim} classifier FID / {anc}'s (no more than 10% worse)",
            _get(rows, ddim, "fid_ratio_vs_ancestral"),
            "<=",
            1.10,
            True,
        ),
        (
            f"{dpm} (same calls as {ddim}) speed-up over {anc}",
            _get(rows, dpm, "speedup_vs_ancestral"),
            ">=",
            15.0,
            True,
        ),
        (
            f"{dpm} classifier FID / {anc}'s (no more than 10% worse)",
            _get(rows, dpm, "fid_ratio_vs_ancestral"),
            "<=",
            1.10,
            True,
        ),
        (
            "classifier-feature evaluation at N=1000 / epoch",
            _get(r, "evaluation", "costs", "classifier_fid", "fraction_of_epoch"),
            "<=",
            0.10,
            cpu,
        ),
        (
            "host syncs (device->host reads) per steady training step",
            _get(r, "host_syncs", "reads_per_steady_step"),
            "<=",
            0,
            True,
        ),
    ]
    needs = {
        "host syncs": ["host_syncs"],
        "Lightning": ["training"],
        "data path": ["training"],
        "speed-up": ["sampling"],
        "FID": ["sampling"],
        "evaluation": ["evaluation", "training"],
    }  # the epoch estimate comes from training
    result = []
    for name, value, op, threshold, applies in out:
        ok = value is not None and math.isfinite(value) and (value >= threshold if op == ">=" else value <= threshold)
        verdict = ("PASS" if ok else "FAIL") if applies else "info (CPU target)"
        if any(word in name and any(sec not in r for sec in secs) for word, secs in needs.items()):
            verdict = "not run (--sections)"
        result.append({"target": name, "measured": value, "op": op, "threshold": threshold, "result": verdict})
    return result


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.3e}"
    return str(x)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines + [""]


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    L = [
        f"# ddpm_lightning benchmark: {m['device']}"
        + (" (SMOKE: tiny settings, numbers meaningless)" if m.get("smoke") else ""),
        "",
    ]
    machine = f"{m['cpu']}, {m['cpu_cores']} cores, {m['torch_threads']} torch threads"
    if m.get("gpu"):
        machine = f"{m['gpu']} ({m['gpu_memory_gib']} GiB); " + machine
    L += [
        f"{m['date']}. {machine}; torch {m['torch']}, lightning {m['lightning']}, Python {m['python']}.",
        f"Load average (1/5/15 min) at start {m['load_average_start']}, at end {m.get('load_average_end')}; "
        f"the benchmark took {_f(m.get('wall_s'), 4)} s. Overrides for every section: {m.get('overrides') or 'none'}.",
        "",
    ]

    L += ["## Targets", ""]
    L += _table(
        ["target", "measured", "threshold", "result"],
        [
            [t["target"], _f(t["measured"], 4), f"{t['op']} {t['threshold']}", f"**{t['result']}**"]
            for t in r["targets"]
        ],
    )

    tr = r.get("training")
    if tr:
        c = tr["config"]
        L += [
            "## 1–2. Training throughput and data path",
            "",
            f"Same network, Adam, batch {c['batch']}, precision {c['precision']}; {c['steps']} timed steps after "
            f"{c['warmup']} "
            f"warm-up steps per measurement "
            f"({'median step time' if r['meta']['device'] == 'cpu' else 'total time'}), "
            f"{c['reps']} repetitions alternating the paths (order rotated each time); medians over repetitions. "
            f"Lightning path: `Trainer.fit` from conf/train.yaml with {c['overrides']}, callbacks {c['callbacks']}, "
            f"loggers {c['logger']}, no validation.",
            "",
        ]
        L += _table(
            ["path", "images/s (median)", "min – max"],
            [[k, v, " – ".join(_f(x) for x in tr["images_per_s_range"][k])] for k, v in tr["images_per_s"].items()],
        )
        L += [
            f"- Lightning / bare: **{_f(tr['lightning_vs_bare']['median'], 4)}** "
            f"(per repetition {[round(x, 3) for x in tr['lightning_vs_bare']['per_rep']]})",
            f"- real data module / synthetic tensors: **{_f(tr['data_vs_synthetic']['median'], 4)}** "
            f"(per repetition {[round(x, 3) for x in tr['data_vs_synthetic']['per_rep']]})",
        ]
        if "on_device_vs_host_data" in tr:
            L += [f"- data on the GPU / in host memory: **{_f(tr['on_device_vs_host_data']['median'], 4)}**"]
        L += [
            f"- seconds per step (Lightning): {_f(tr['step_s'], 4)}; "
            f"an epoch (468 steps) ≈ {_f(tr['step_s'] * 468, 4)} s",
            "",
        ]
    ov = r.get("overhead")
    if ov:
        L += [
            "### Framework cost per step",
            "",
            f"{ov['network']}, {ov.get('torch_threads')} torch thread(s): ms per step of each path "
            f"({ov['steps']} steps, {ov['reps']} repetitions) and the difference to the bare loop, "
            "i.e. what Lightning adds to every step whatever the network. Each variant switches one suspect off.",
            "",
        ]
        L += _table(
            ["path", "ms/step", "overhead ms/step"],
            [[k, v, ov["overhead_ms_per_step"].get(k)] for k, v in ov["ms_per_step"].items()],
        )

    hs = r.get("host_syncs")
    if hs:
        L += [
            "### Host synchronisations per training step",
            "",
            f"{hs['steps']} steps at batch {hs['batch']}, {hs['precision']}: {hs['how']}. Per steady step (the most "
            f"of {hs['steady_steps']}): **{_f(hs['reads_per_steady_step'])}**; mean over all steps "
            f"{_f(hs['reads_per_step_mean'])}. Where they are: {hs['sites'] or 'none'}.",
            "",
        ]

    s = r.get("sampling")
    if s:
        ck = s["checkpoint"]
        made = (
            "trained by this benchmark"
            if ck.get("trained_here")
            else ("trained by an earlier run of this benchmark (cached)" if ck.get("cached") else "given with --ckpt")
        )
        how = (
            f"{made}; {ck.get('global_step')} steps ({ck.get('epochs')} epochs) at batch 128, Adam lr {ck.get('lr')}, "
            f"{ck.get('precision')}"
            + (", EMA weights" if ck.get("ema_weights") else "")
            + (
                f"; trained in {ck.get('train_s')} s, last train loss {_f(ck.get('final_train_loss'))}"
                if ck.get("trained_here")
                else ""
            )
        )
        L += [
            "## 3. Sampling",
            "",
            f"Checkpoint `{ck.get('path')}`: {ck.get('model')} {ck.get('channels')}, {ck.get('schedule')} schedule, "
            f"T = {ck.get('T')}; {how}.",
            f"{s['n']} samples per sampler in one batch, seed {s['seed']}; classifier FID against the first "
            f"{s['n']} MNIST test images "
            f"(classifier {s['classifier']['path']}, test accuracy {s['classifier']['test_accuracy']}). "
            f"Real-vs-real floor at this N (test vs train images): {_f(s['fid_floor_real_vs_real'], 4)}.",
            "",
        ]
        L += _table(
            [
                "sampler",
                "network calls",
                "precision",
                "seconds",
                "images/s",
                "speed-up",
                "classifier FID",
                "FID / ancestral",
                "90% bootstrap interval",
            ],
            [
                [
                    k,
                    v["steps"],
                    v.get("precision", "32-true"),
                    v["seconds"],
                    v["images_per_s"],
                    v["speedup_vs_ancestral"],
                    v["fid_mnist"],
                    v["fid_ratio_vs_ancestral"],
                    _interval(v.get("fid_ratio_interval_90")),
                ]
                for k, v in s["samplers"].items()
            ],
        )
        L += [
            "The interval: FID / ancestral when both sample sets are redrawn with replacement "
            f"({s.get('bootstrap_rounds', 100)} rounds), "
            "i.e. how much "
            "of the ratio the luck of n samples explains.",
            "",
        ]
        L += [
            f"One network call costs {_f(s['ms_per_network_call_per_image'])} ms per image at batch {s['batch']}.",
            "",
        ]

    e = r.get("evaluation")
    if e:
        L += [
            "## 4. Evaluation cost per epoch",
            "",
            f"N = {e['n']}; epoch ≈ {_f(e['step_s'], 4)} s/step (section 1's Lightning path"
            + (f", {tr['config']['precision']}" if tr else "")
            + f") × {e['epoch_steps']} = {_f(e['epoch_s_estimate'], 4)} s. Real features are "
            "computed once per run (cached), so not counted.",
            "",
        ]
        L += _table(
            ["evaluation", "seconds", "ms per sample", "fraction of epoch", "how"],
            [
                [
                    k,
                    v.get("seconds"),
                    v.get("per_sample_ms"),
                    _pct(v.get("fraction_of_epoch")),
                    v.get("how") or v.get("unavailable", ""),
                ]
                for k, v in e["costs"].items()
            ],
        )

    c = r.get("capacity")
    if c:
        conv = c.get("conv_flops_per_s")
        L += [
            "## 5. Memory and FLOPs",
            "",
            f"Measured matmul rate ({c['precision']}): {_f(c['matmul_flops_per_s'] / 1e9, 4)} GFLOP/s "
            f"(2048² matmul); measured "
            f"convolution rate: {_f(conv / 1e9 if conv else None, 4)} GFLOP/s "
            f"(7×7, 128→256 channels, 28×28). {c['flops_note']}; "
            f"FLOPs/step at batch {c['study_batch']}, achieved rate at the timing batch. "
            + (
                "Each row in its own process."
                if c.get("isolated", True)
                else "Rows measured in the benchmark's process (--smoke): memory is not per row."
            ),
            "",
        ]
        mem = "max allocated MiB" if any("max_allocated_mb" in x for x in c["rows"]) else "peak RSS MiB (before steps)"
        rows = []
        for x in c["rows"]:
            memv = (
                _f(x["max_allocated_mb"], 4)
                if "max_allocated_mb" in x
                else f"{x['peak_rss_mb']:.0f} ({x['rss_before_steps_mb']:.0f})"
            )
            rows.append(
                [
                    x["model"],
                    x["capacity"],
                    x["parameters"],
                    _f(x["flops_per_step"] / 1e9, 4),
                    x["timing_batch"],
                    x["step_s"],
                    _f(x["achieved_flops_per_s"] / 1e9, 3),
                    _pct(x["fraction_of_matmul_peak"]),
                    _pct(x.get("fraction_of_conv_rate")),
                    memv,
                    _f(x["epoch_s_estimate"], 4),
                ]
            )
        L += _table(
            [
                "model",
                "capacity",
                "parameters",
                "GFLOP/step",
                "timing batch",
                "s/step",
                "achieved GFLOP/s",
                "of matmul rate",
                "of conv rate",
                mem,
                "epoch s (est.)",
            ],
            rows,
        )

    so = r.get("speed_options")
    if so:
        L += [
            "## 6. Speed options",
            "",
            f"Bare loop, batch {so['batch']}, {so['steps']} steps × {so['reps']} alternating repetitions, "
            f"each option alone against the "
            f"device preset `{so['preset_name']}` = {so['preset']}."
            + (
                f" torch.compile's first steps took {_f(so['compile_warmup_s'], 3)} s."
                if so.get("compile_warmup_s")
                else ""
            ),
            "",
        ]
        L += _table(
            ["variant", "images/s", "ratio to preset"],
            [[k, v, so["ratio_to_preset"][k]] for k, v in so["images_per_s"].items()],
        )
        L += [f"Fastest: **{so['fastest']}**. {so.get('verdict', '')}", ""]
    pp = r.get("precision_per_size")
    if pp:
        L += [
            "### Precision per network size",
            "",
            f"Bare loop, float32 (TF32 where the preset allows it) against bf16 autocast, {pp['steps']} steps × "
            f"{pp['reps']} alternating repetitions; the `{pp['preset_name']}` preset's pick agrees when it is "
            f"within {pp['noise']:.0%} of the fastest (ddpm_lightning/speed.py `gpu_precision`).",
            "",
        ]
        L += _table(
            ["size", "network", "float32 images/s", "bf16 images/s", "bf16 / float32", "fastest", "preset", "agrees"],
            [
                [
                    k,
                    f"{v['model']} {v['channels']}",
                    v["images_per_s"]["32-true"],
                    v["images_per_s"]["bf16-mixed"],
                    v["bf16_vs_float32"],
                    v["fastest"],
                    v["preset"],
                    "yes" if v["preset_agrees"] else "**no**",
                ]
                for k, v in pp["sizes"].items()
            ],
        )

    if r.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in r["notes"]] + [""]
    return "\n".join(L)
