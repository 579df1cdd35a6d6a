"""Structured-config schemas: the types of the keys users set, checked by Hydra/OmegaConf while composing.

Each entry point's config (conf/train.yaml, sample.yaml, evaluate.yaml) starts its defaults list with its schema
(``train_schema``, ...), registered here in Hydra's ConfigStore; the yaml files and the command line merge onto it,
so ``trainer.max_epochs=abc`` or ``data.download=maybe`` is refused by OmegaConf itself (a ValidationError that
``cli.check_overrides`` prints as one line) and an unknown key by Hydra (``+key=value`` adds one, as before).

Typed: every top-level key of the three entry points, and the groups ``data``, ``trainer`` (the knobs the configs
set), ``optimizer``, the ``module`` node's own options and evaluate's ``metrics`` and ``denoise``. The swappable parts
(schedule, capacity, model, degradation, sampler, callbacks, logger, paths) stay untyped (``Any``): each is checked
by the class it instantiates (a bad ``schedule.beta_end`` is a one-line DDPMError from the schedule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# Optional[...] rather than `X | None`: OmegaConf reads these annotations at runtime, also on Python 3.9.
# ruff: noqa: UP007, UP045


@dataclass
class DataSchema:
    """conf/data/mnist.yaml: ``lit.data.MNISTDataModule``."""

    _target_: str = "ddpm_lightning.lit.data.MNISTDataModule"
    root: str = MISSING
    batch_size: int = 128
    download: bool = True
    num_workers: int = 0
    train_subset: Optional[int] = None
    val_subset: Optional[int] = None
    seed: int = 0
    on_device: bool = False


@dataclass
class TrainerSchema:
    """conf/trainer/: ``lightning.pytorch.Trainer``'s arguments that the configs set. The ones defaulting to None
    are Lightning's own defaults (``+trainer.limit_train_batches=2`` still works); ``+trainer.<other>=...`` adds
    any other Trainer argument, untyped."""

    _target_: str = "lightning.pytorch.Trainer"
    default_root_dir: Optional[str] = None
    max_epochs: Optional[int] = None
    accelerator: str = "auto"
    devices: Any = "auto"  # int, a list of indices or "auto"
    num_nodes: int = 1
    strategy: Any = "auto"
    sync_batchnorm: bool = False
    precision: Any = "32-true"  # 32-true | bf16-mixed | 16-mixed | 64-true ... (Lightning checks the value)
    check_val_every_n_epoch: Optional[int] = 1
    log_every_n_steps: Optional[int] = None
    limit_train_batches: Any = None  # int: batches, float: a fraction of the epoch
    limit_val_batches: Any = None
    enable_model_summary: Optional[bool] = None
    enable_progress_bar: Optional[bool] = None
    deterministic: Any = None  # bool or "warn"
    plugins: Any = None
    gradient_clip_val: Optional[float] = None
    max_time: Any = None  # "DD:HH:MM:SS" or a dict (Lightning checks it)


@dataclass
class OptimizerSchema:
    """The ``optimizer`` node: a partial ``torch.optim`` class, completed with the parameters by the module."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 2e-4


@dataclass
class ModuleSchema:
    """The ``module`` node: ``lit.module.DiffusionModule`` with its parts (untyped here) and its own options."""

    _target_: str = "ddpm_lightning.lit.module.DiffusionModule"
    network: Any = None
    schedule: Any = None
    degradation: Any = None
    sampler: Any = None
    optimizer: Any = None
    lr_scheduler: Any = None
    image_shape: list[int] = field(default_factory=lambda: [1, 28, 28])  # (C, H, W)
    val_seed: int = 0
    check_finite: bool = True
    channels_last: bool = False
    compile: bool = False
    sample_precision: Optional[str] = None
    loss_weighting: Any = None


@dataclass
class TrainSchema:
    """conf/train.yaml."""

    task_name: str = "train"
    seed: int = 0
    T: int = 1000
    ckpt_path: Optional[str] = None
    optimized_metric: Optional[str] = None
    threads: Optional[int] = None
    float32_matmul_precision: Optional[str] = None  # highest | high | medium (torch checks it)
    loss_weighting: Any = None  # core/loss_weighting.py's MinSNR (experiment=best) or null: uniform
    lr_scheduler: Any = None  # a partial torch.optim.lr_scheduler class (experiment=best) or null
    data: DataSchema = field(default_factory=DataSchema)
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    optimizer: OptimizerSchema = field(default_factory=OptimizerSchema)
    module: ModuleSchema = field(default_factory=ModuleSchema)
    schedule: Any = None
    capacity: Any = None
    model: Any = None
    sampler: Any = None
    degradation: Any = None
    logger: Any = None
    callbacks: Any = None
    paths: Any = None


@dataclass
class CheckpointTaskSchema:
    """What ``sample`` and ``evaluate`` share: a checkpoint, sampled in batches on a device."""

    ckpt_path: str = MISSING
    batch_size: int = 500
    device: Optional[str] = None
    precision: Optional[str] = None
    output: Optional[str] = None
    sampler: Any = None
    paths: Any = None


@dataclass
class SampleSchema(CheckpointTaskSchema):
    """conf/sample.yaml."""

    task_name: str = "sample"
    n: int = 64
    seed: int = 0
    save_tensor: bool = False


@dataclass
class MetricsSchema:
    """conf/metrics/: ``evaluation.SampleQuality``'s arguments (typed here under evaluate's ``metrics``)."""

    n: int = 100
    seed: int = 1234
    psnr_ssim: bool = True
    fid: bool = False
    kid: bool = False
    fid_mnist: bool = True
    psnr_references: int = 100
    kid_subsets: int = 50
    kid_subset_size: int = 500
    inception_dims: int = 2048
    inception_antialias: bool = False
    min_mode_share: float = 0.1
    inception_weights: Optional[str] = None
    classifier_path: Optional[str] = None
    train_classifier_if_missing: bool = True
    cache_dir: Optional[str] = None
    data_root: Optional[str] = None
    split: str = "test"
    floors: bool = True
    bootstrap: int = 0
    bootstrap_inception: bool = False
    confidence: float = 0.95


@dataclass
class DenoiseSchema:
    """evaluate's ``denoise``: ``evaluation.DenoisingQuality``'s settings (null: off)."""

    n: int = 64
    timesteps: Optional[list[int]] = None
    seed: int = 0


@dataclass
class EvaluateSchema(CheckpointTaskSchema):
    """conf/evaluate.yaml."""

    task_name: str = "evaluate"
    n: int = 1000
    seed: int = 1234
    data_root: str = MISSING
    split: str = "test"
    save_grid: int = 64
    metrics: MetricsSchema = field(default_factory=MetricsSchema)
    denoise: Optional[DenoiseSchema] = field(default_factory=DenoiseSchema)


SCHEMAS = {"train_schema": TrainSchema, "sample_schema": SampleSchema, "evaluate_schema": EvaluateSchema}


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent); the configs name them first in their defaults list."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(name=name, node=node)


register()
