"""End-to-end: the real Hydra entry points on tiny settings against the real MNIST files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ddpm_lightning.build import build_module
from ddpm_lightning.cli import _compose, _schema_error, check_overrides, user_error
from ddpm_lightning.core.errors import DDPMError
from ddpm_lightning.lit.data import load_mnist
from ddpm_lightning.train import GROUPS
from tests.helpers.run import TINY, run_cli


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.e2e
def test_train_checkpoint_sample(tmp_path: Path, trained_run: Path) -> None:
    run_dir = trained_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file() and len(list((run_dir / "checkpoints").glob("epoch_*.ckpt"))) == 1
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == ["epoch_000.png", "epoch_001.png"]
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # no code executed from the file
    assert ckpt["epoch"] == 1 and ckpt["ddpm_config"]["schedule"]["T"] == 20

    out = tmp_path / "grid.png"
    _ok(
        run_cli(
            "ddpm_lightning.sample",
            f"ckpt_path={last}",
            "n=9",
            f"output={out}",
            "save_tensor=true",
            f"hydra.run.dir={tmp_path / 'sample'}",
            warm=False,  # cold: a fresh interpreter, as a user starts it (one launch per entry point)
        )
    )
    with Image.open(out) as im:
        assert im.size == (3 * 30 + 2, 3 * 30 + 2)  # 3×3 grid of 28-px images with 2-px padding
    images = torch.load(out.with_suffix(".pt"), weights_only=True)
    assert images.shape == (9, 1, 28, 28) and images.min() >= -1 and images.max() <= 1

    # the same seed gives the same samples; DDIM through the CLI is different but valid
    out2 = tmp_path / "grid2.pt"
    _ok(
        run_cli(
            "ddpm_lightning.sample",
            f"ckpt_path={last}",
            "n=9",
            f"output={out2.with_suffix('.png')}",
            "save_tensor=true",
            f"hydra.run.dir={tmp_path / 'sample2'}",
        )
    )
    assert torch.equal(images, torch.load(out2, weights_only=True))
    _ok(
        run_cli(
            "ddpm_lightning.sample",
            f"ckpt_path={last}",
            "n=4",
            "sampler=ddim",
            "sampler.num_steps=5",
            f"hydra.run.dir={tmp_path / 'sample3'}",
        )
    )
    assert (tmp_path / "sample3" / "samples.png").is_file()
    _ok(
        run_cli(
            "ddpm_lightning.sample",
            f"ckpt_path={last}",
            "n=4",
            "sampler=dpm_solver",
            "sampler.num_steps=5",
            f"output={tmp_path / 'dpm.png'}",
            "save_tensor=true",
            f"hydra.run.dir={tmp_path / 'sample4'}",
        )
    )
    dpm = torch.load(tmp_path / "dpm.pt", weights_only=True)
    assert dpm.shape == (4, 1, 28, 28) and torch.isfinite(dpm).all() and dpm.std() > 0.05


@pytest.mark.parametrize(
    "override, needle",
    [
        ("schedule=foo", "unknown schedule 'foo'; valid choices: cosine, custom, geometric, linear"),
        ("capacity=huge", "unknown capacity 'huge'; valid choices: large, medium, small"),
        ("model=mlp", "unknown model 'mlp'; valid choices: cnn, unet"),
        ("trainer.max_epochs=abc", "trainer.max_epochs must be int, got 'abc'"),
        ("data.download=maybe", "data.download must be bool, got 'maybe'"),
        ("data.train_subset=abc", "data.train_subset must be int, got 'abc'"),  # default null: typed by the schema
        ("threads=two", "threads must be int, got 'two'"),
        ("optimizer.lr=fast", "optimizer.lr must be float, got 'fast'"),
        ("module.compile=maybe", "module.compile must be bool, got 'maybe'"),
        ("no_such_option=1", "Could not override 'no_such_option'. To append to your config use +no_such_option=1"),
        ("trainer.max_epochs=[1", "bad override:"),
    ],
)
def test_bad_override_is_one_clear_line(capsys, override: str, needle: str) -> None:
    """Checked before Hydra starts (in process: the same function the entry point calls)."""
    with pytest.raises(SystemExit) as info:
        check_overrides(["train", "T=20", override], "train", GROUPS)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {needle}"), err


@pytest.mark.parametrize(
    "config, override, key",
    [
        ("train", "trainer.max_epochs=abc", "trainer.max_epochs"),
        ("train", "data.val_subset=all", "data.val_subset"),
        ("evaluate", "metrics.fid=maybe", "metrics.fid"),
        ("evaluate", "denoise.n=many", "denoise.n"),
        ("sample", "save_tensor=maybe", "save_tensor"),
    ],
)
def test_hydra_itself_refuses_a_bad_type(config: str, override: str, key: str) -> None:
    """The schemas (ddpm_lightning/schema.py) type the configs: Hydra's own composition fails, not only the
    command-line pre-check, and the pre-check reads Hydra's error."""
    with pytest.raises(Exception) as info:
        _compose(config, ["ckpt_path=x", override] if config != "train" else [override])
    assert _schema_error(info.value, []) is not None and _schema_error(info.value, []).startswith(f"{key} must be ")


@pytest.mark.parametrize(
    "override, needle",
    [
        ("schedule.beta_end=1.5", "schedule.beta_end must lie in (0, 1), got 1.5"),
        ("schedule.beta_start=0.0", "schedule.beta_start must lie in (0, 1), got 0.0"),
        ("schedule.beta_start=0.05", "schedule.beta_start (0.05) must not exceed schedule.beta_end (0.02)"),
        ("T=1", "schedule.T must be an integer >= 2, got 1"),
        ("capacity.channels=[]", "channels must be a non-empty list of positive integers, got []"),
        ("capacity.channels=[16,0]", "channels must be a non-empty list of positive integers, got [16, 0]"),
    ],
)
def test_bad_value_is_a_user_error(override: str, needle: str) -> None:
    """The composed config fails while being instantiated with a DDPMError, which run_task prints as one line."""
    cfg = _compose("train", [override])
    with pytest.raises(Exception) as info:
        build_module(cfg)
    assert str(user_error(info.value)) == needle


@pytest.mark.e2e
@pytest.mark.parametrize("override", ["schedule.beta_end=1.5", "capacity.channels=[]"])
def test_bad_value_through_the_entry_point(tmp_path: Path, override: str) -> None:
    proc = run_cli("ddpm_lightning.train", *TINY, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert (tmp_path / "run" / "FAILED").read_text().strip() == errors[0].removeprefix("error: ")


@pytest.mark.e2e
def test_missing_mnist_without_network(tmp_path: Path) -> None:
    proc = run_cli(
        "ddpm_lightning.train", *TINY, f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert proc.returncode == 2
    assert "error: MNIST not found in" in proc.stderr and "set DDPM_DATA_DIR" in proc.stderr
    with pytest.raises(DDPMError, match="MNIST files missing in"):
        load_mnist(tmp_path / "nowhere", "train", download=False)


@pytest.mark.e2e
def test_unreadable_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Present but unreadable: named as such (not as missing, and no download attempt)."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).mkdir(parents=True)  # a folder where the file should be
    proc = run_cli("ddpm_lightning.train", *TINY, f"data.root={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: cannot read MNIST file {raw / 'train-images-idx3-ubyte'}: Is a directory"], proc.stderr[
        -2000:
    ]

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # tests may run as root, where chmod 000 does not deny reading
    with pytest.raises(DDPMError, match=r"^cannot read MNIST file .*t10k-images-idx3-ubyte: Permission denied$"):
        load_mnist(tmp_path / "data", "test", download=True)


def _copy_mnist(src: Path, dst: Path) -> Path:
    raw = dst / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (src / "MNIST" / "raw").glob("t10k-*-ubyte"):
        (raw / f.name).write_bytes(f.read_bytes())
    return raw


@pytest.mark.parametrize("corruption", ["magic", "truncated"])
def test_corrupt_mnist(tmp_path: Path, data_dir: Path, corruption: str) -> None:
    raw = _copy_mnist(data_dir, tmp_path / "data")
    f = raw / "t10k-images-idx3-ubyte"
    data = bytearray(f.read_bytes())
    if corruption == "magic":
        data[2:4] = b"\x08\x01"
        f.write_bytes(bytes(data))
        needle = "has magic number 2049, expected 2051"
    else:
        f.write_bytes(bytes(data[: len(data) // 2]))
        needle = "truncated or corrupt"
    with pytest.raises(DDPMError) as info:
        load_mnist(tmp_path / "data", "test")
    assert needle in str(info.value) and str(f) in str(info.value) and "\n" not in str(info.value)
