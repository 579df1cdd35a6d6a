"""Sampling throughput and the quality cost of DDIM: ancestral (T steps) against DDIM-k on one checkpoint.

Ancestral sampling (Ho et al. 2020, Alg. 2) needs T network calls per image, DDIM (Song et al. 2021,
eq. 12) k. Quality is the classifier FID (``val/fid_mnist``'s feature space) of n samples from the
same seed against the first n MNIST test images. With an untrained network the comparison means
nothing, so the checkpoint is either given (``--ckpt``) or trained here for ``train_steps`` steps and
cached under ``benchmarks/results/cache/`` (its settings go into the table).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from benchmarks.common import compose_train, run_config, speed_overrides, sync
from ddpm_lightning.build import build_module, load_module
from ddpm_lightning.core.dpm_solver import DPMSolver
from ddpm_lightning.core.samplers import DDIM, Ancestral
from ddpm_lightning.evaluation.classifier import load_or_train_classifier
from ddpm_lightning.evaluation.metrics import ClassifierFeatures, frechet_distance
from ddpm_lightning.lit.checkpoint import ConfigInCheckpoint, read_checkpoint
from ddpm_lightning.lit.data import load_mnist
from ddpm_lightning.lit.module import DiffusionModule


def train_checkpoint(
    path: Path, device: torch.device, steps: int, lr: float, overrides: list[str], workdir: str
) -> dict[str, Any]:
    """Train the study's small CNN (linear schedule, Gaussian noise; T from ``overrides``, default 1000)
    for ``steps`` steps of batch 128 with Adam at ``lr`` and save a regular checkpoint at ``path``."""
    cfg = compose_train([*speed_overrides(device), *overrides, f"optimizer.lr={lr}"], workdir)
    torch.manual_seed(int(cfg.seed))
    module = build_module(cfg)
    trainer = instantiate(
        cfg.trainer,
        callbacks=[ConfigInCheckpoint(run_config(cfg))],
        logger=False,
        max_epochs=-1,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    tick = time.perf_counter()
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        trainer.fit(module, datamodule=instantiate(cfg.data))
    seconds = time.perf_counter() - tick
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(path))
    return {
        "trained_here": True,
        "steps": steps,
        "epochs": round(steps / 468, 2),
        "lr": lr,
        "batch": int(cfg.data.batch_size),
        "train_s": round(seconds, 1),
        "final_train_loss": float(trainer.callback_metrics.get("train/loss_step", float("nan"))),
    }


def get_checkpoint(
    ckpt: str | None, cache_dir: Path, device: torch.device, steps: int, lr: float, overrides: list[str], workdir: str
) -> tuple[DiffusionModule, dict[str, Any]]:
    """The module to sample from (EMA weights if the checkpoint has them) and a description of it."""
    if ckpt:
        info: dict[str, Any] = {"trained_here": False, "path": str(ckpt)}
    else:
        tag = "_".join(o.replace("=", "-").replace("/", "-") for o in [*speed_overrides(device), *overrides])
        path = cache_dir / f"bench_{tag}_steps{steps}_lr{lr:g}.ckpt"
        if path.is_file():
            info = {"trained_here": False, "cached": True, "steps": steps, "epochs": round(steps / 468, 2), "lr": lr}
        else:
            info = train_checkpoint(path, device, steps, lr, overrides, workdir)
        info["path"] = str(path)
    module, cfg = load_module(info["path"])
    ckpt = read_checkpoint(info["path"])
    step = int(ckpt.get("global_step", 0))
    info.update(
        {
            "model": cfg.model._target_.rsplit(".", 1)[-1],
            "channels": list(cfg.capacity.channels),
            "T": int(cfg.T),
            "schedule": cfg.schedule._target_.rsplit(".", 1)[-1],
            "global_step": step,
            "epochs": round(step * int(cfg.data.batch_size) / 60000, 2),
            "lr": float(cfg.optimizer.lr),
            "precision": str(cfg.trainer.precision),
            "ema_weights": "current_model_state" in ckpt,
        }
    )
    return module.to(device), info


def sampling(
    device: torch.device,
    n: int,
    ddim_steps: list[int],
    ckpt: str | None,
    cache_dir: Path,
    train_steps: int,
    lr: float,
    overrides: list[str],
    workdir: str,
    data_root: str,
    seed: int = 1234,
    rounds: int = 100,
) -> dict[str, Any]:
    """Section 3: images/s and classifier FID of ancestral-T and DDIM-k (η = 0, linear spacing: the config's
    default), and at the first k DDIM with η = 1 and/or quadratic spacing and DPM-Solver++(2M) (SDE and ODE
    forms), n samples each, batch n. The
    network samples in the device preset's precision (speed=cpu|gpu); one more row in float32. Each ratio's
    interval: ``rounds`` bootstrap redraws."""
    module, info = get_checkpoint(ckpt, cache_dir, device, train_steps, lr, overrides, workdir)
    model, meta = load_or_train_classifier(None)
    classifier = ClassifierFeatures(model, meta["sha256"]).to(device)
    real, _ = load_mnist(data_root, "test", n=n)  # (n, 1, 28, 28)
    other, _ = load_mnist(data_root, "train", n=n)
    real_feats = classifier(real)  # (n, 64)
    out: dict[str, Any] = {
        "checkpoint": info,
        "n": n,
        "batch": n,
        "seed": seed,
        "classifier": {"path": meta["path"], "test_accuracy": meta.get("test_accuracy")},
        "fid_floor_real_vs_real": frechet_distance(classifier, real_feats, other),
    }
    T = module.schedule.T
    precision = str(compose_train(speed_overrides(device), workdir).trainer.precision)  # what speed=cpu|gpu samples in
    module.set_sample_precision(precision)
    samplers = {f"ancestral_{T}": functools.partial(Ancestral, variance="beta")}
    for k in ddim_steps:
        samplers[f"ddim_{k}"] = functools.partial(DDIM, num_steps=k, eta=0.0)  # conf/sampler/ddim.yaml: deterministic
    k = ddim_steps[0]  # variants at the same cost: stochastic (η = 1), timesteps evenly in √t (Song et al. App. D.2)
    samplers[f"ddim_{k}_eta1"] = functools.partial(DDIM, num_steps=k, eta=1.0)
    samplers[f"ddim_{k}_quadratic"] = functools.partial(DDIM, num_steps=k, eta=0.0, spacing="quadratic")
    samplers[f"ddim_{k}_quadratic_eta1"] = functools.partial(DDIM, num_steps=k, eta=1.0, spacing="quadratic")
    # same costs, second order (conf/sampler/dpm_solver.yaml: SDE form, log-SNR spacing), and its ODE form
    for j in ddim_steps:
        samplers[f"dpm_solver_{j}"] = functools.partial(DPMSolver, num_steps=j)
    samplers[f"dpm_solver_{k}_ode"] = functools.partial(DPMSolver, num_steps=k, eta=0.0)
    runs = [(name, factory, precision) for name, factory in samplers.items()]
    if precision != "32-true":  # what the preset's precision costs in quality, and saves in time
        runs.append((f"ddim_{k}_float32", samplers[f"ddim_{k}"], "32-true"))
    rows: dict[str, Any] = {}
    feats: dict[str, torch.Tensor] = {}
    for name, factory, prec in runs:
        module.set_sample_precision(prec)
        sync(device)
        tick = time.perf_counter()
        images = module.generate(n, seed=seed, sampler=factory, batch_size=n)  # (n, 1, 28, 28)
        sync(device)
        seconds = time.perf_counter() - tick
        steps = (
            T
            if name.startswith("ancestral")
            else int(name.removeprefix("dpm_solver_").removeprefix("ddim_").split("_")[0])
        )
        feats[name] = classifier(images)  # (n, 64)
        rows[name] = {
            "steps": steps,
            "precision": prec,
            "seconds": seconds,
            "images_per_s": n / seconds,
            "fid_mnist": frechet_distance(classifier, real_feats, feats[name]),
        }
    module.set_sample_precision(precision)
    anc_name = f"ancestral_{T}"
    anc = rows[anc_name]
    for name, row in rows.items():
        row["speedup_vs_ancestral"] = row["images_per_s"] / anc["images_per_s"]
        row["fid_ratio_vs_ancestral"] = row["fid_mnist"] / anc["fid_mnist"]
        if name != anc_name:
            row["fid_ratio_interval_90"] = bootstrap_ratio(
                classifier, real_feats, feats[name], feats[anc_name], seed, rounds
            )
    out["precision"] = precision
    out["bootstrap_rounds"] = rounds
    out["samplers"] = rows
    out["ms_per_network_call_per_image"] = 1e3 * anc["seconds"] / (T * n)
    return out


def bootstrap_ratio(
    classifier: ClassifierFeatures, real: torch.Tensor, a: torch.Tensor, b: torch.Tensor, seed: int, rounds: int = 100
) -> list[float]:
    """5th and 95th percentiles of FID(a)/FID(b) when both sample sets are redrawn with replacement
    (the real set fixed): how much of a ratio is the luck of n samples. (n, d) features each."""
    gen = torch.Generator().manual_seed(seed)
    n = a.shape[0]
    ratios = []
    for _ in range(rounds):
        ia, ib = torch.randint(0, n, (n,), generator=gen), torch.randint(0, n, (n,), generator=gen)
        ratios.append(frechet_distance(classifier, real, a[ia]) / frechet_distance(classifier, real, b[ib]))
    q = torch.tensor(ratios, dtype=torch.float64).quantile(torch.tensor([0.05, 0.95], dtype=torch.float64))
    return [float(q[0]), float(q[1])]
