"""Where the real MNIST files and FID weights are, the tiny-run overrides, and running entry points as a user does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SHARED = REPO.parent / "shared"

DATA_DIR = Path(os.environ.get("DDPM_DATA_DIR", SHARED / "data"))
FID_WEIGHTS = Path(os.environ.get("DDPM_FID_WEIGHTS", SHARED / "weights" / "pt_inception-2015-12-05.pth"))

# Overrides that shrink a training run to seconds on CPU (real MNIST files, tiny T, few batches): conf/debug/tiny.yaml.
TINY = ["+debug=tiny"]
# TINY without its batch limit: runs that each test bounds (trainer.max_epochs=..., always given) or interrupts itself.
UNBOUNDED = [*TINY, "trainer.limit_train_batches=null"]
# A 2-epoch run of a tiny CNN in a few seconds, without progress bars: the sweeps' jobs (report, multirun, DDP tests).
TINY_SWEEP = ["+debug=quiet", "T=10", "capacity.channels=[8,8]", "trainer.max_epochs=2"]

# des+ema runs (DES's running noise scale, EMA weights, Adam's moments): 2 epochs of 2 batches straight, and the
# same as 1 epoch + a resume for the second. Small averaging decay: the EMA weights differ visibly from the raw ones.
# A 2-block CNN (8 channels): what is checked is the state carried across a resume, not the network; the default
# one's training step costs ~10x the CPU.
DES_EMA = [*TINY, "degradation=des", "callbacks=ema", "callbacks.ema.decay=0.9", "capacity.channels=[8,8]"]
# Mid-epoch runs: 8 batches of 16 per epoch (128 images), validation on 32 images, a step checkpoint every 3 steps;
# the 2-block CNN, as DES_EMA.
MID_EPOCH = [
    *UNBOUNDED,
    "capacity.channels=[8,8]",
    "data.train_subset=128",
    "data.val_subset=32",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "callbacks.step_checkpoint.every_n_train_steps=3",
]


# Whether the running test is marked ``e2e`` (set by tests/conftest.py before the test's fixtures are set up): an
# entry point in a subprocess or a full ``Trainer.fit`` outside an e2e test fails, so `make test-fast` stays fast.
E2E_ALLOWED = [True]


def require_e2e(what: str) -> None:
    """Fail when the running test is not marked ``e2e`` but does what only e2e tests may (``what``)."""
    if not E2E_ALLOWED[0]:
        raise AssertionError(f"{what}: a test that runs an entry point or a full fit must be marked @pytest.mark.e2e")


def guard_fit() -> None:
    """Make ``lightning.pytorch.Trainer.fit`` call ``require_e2e`` (once Lightning is imported)."""
    pl = sys.modules.get("lightning.pytorch")
    if pl is None or getattr(pl.Trainer.fit, "e2e_guard", False):
        return
    fit = pl.Trainer.fit

    def guarded(self: object, *args: object, **kwargs: object) -> object:
        require_e2e("Trainer.fit")
        return fit(self, *args, **kwargs)

    guarded.e2e_guard = True
    pl.Trainer.fit = guarded


# Warm launches (tests/helpers/zygote.py): the imports are paid once per session, not per launch. DDPM_TEST_COLD=1
# makes every launch a fresh interpreter; so does a CUDA machine (the GPU tier launches cold).
CLIENT = Path(__file__).with_name("zygote_client.py")
_ZYGOTE: dict[str, object] = {}


def _launch_env(env: dict[str, str] | None) -> dict[str, str]:
    # PYTHONPATH: test-only callbacks (tests.helpers) from any cwd
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "DDPM_DATA_DIR": str(DATA_DIR), "PYTHONPATH": pythonpath, **(env or {})}


def _zygote() -> str | None:
    """The socket of this session's zygote (the xdist controller's, or started on first use), or None when launches
    are cold."""
    import torch

    if os.environ.get("DDPM_TEST_COLD") == "1" or torch.cuda.is_available():
        return None
    return os.environ.get(SHARED_ZYGOTE) or start_zygote()


def start_zygote() -> str:
    """Start this process's zygote unless it has one; returns its socket path."""
    if "path" not in _ZYGOTE:
        tmp = Path(tempfile.mkdtemp(prefix="ddpm-zygote-"))
        env = _launch_env(None)
        env.pop("PYTHONWARNINGS", None)  # each child sets its own filters and threads
        env.pop("OMP_NUM_THREADS", None)
        with open(tmp / "zygote.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.helpers.zygote", str(tmp / "sock")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=REPO,
                env=env,
            )
        if proc.stdout.readline().strip() != "ready":  # a state: it listens (or it died: EOF)
            raise RuntimeError(f"the test zygote did not start:\n{(tmp / 'zygote.log').read_text()[-3000:]}")
        _ZYGOTE.update(path=str(tmp / "sock"), proc=proc, tmp=tmp)
    return str(_ZYGOTE["path"])


# The zygote of an xdist run, started by the controller (tests/conftest.py) and shared by its workers: one process
# importing everything for the whole suite, not one per worker.
SHARED_ZYGOTE = "DDPM_TEST_ZYGOTE"


def stop_zygote() -> None:
    """End this session's zygote (tests/conftest.py, at the end of the session)."""
    proc = _ZYGOTE.pop("proc", None)
    if proc is not None:
        proc.terminate()
        proc.wait()
        shutil.rmtree(_ZYGOTE.pop("tmp"), ignore_errors=True)
        _ZYGOTE.clear()


def command(module: str, *args: str, warm: bool = True) -> list[str]:
    """The command line of ``python -m <module> <args>``: through the zygote when ``warm`` (the same run, without
    paying the imports again), a fresh interpreter otherwise (tests of signals sent from outside, of import-time
    output, and one launch per entry point)."""
    require_e2e(f"python -m {module}")
    path = _zygote() if warm else None
    return [sys.executable, str(CLIENT), path, module, *args] if path else [sys.executable, "-m", module, *args]


def popen(module: str, *args: str, env: dict[str, str] | None = None, warm: bool = True, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` of ``command(module, *args, warm=warm)`` with the tests' environment."""
    return subprocess.Popen(command(module, *args, warm=warm), env=_launch_env(env), **kwargs)


RUN_PID_FILE = "DDPM_TEST_RUN_PID_FILE"  # where the zygote client writes its run's pid (tests/helpers/zygote_client.py)


def run_pid(proc: subprocess.Popen, pid_file: Path) -> int:
    """The pid of the run that ``proc`` launched with ``env={RUN_PID_FILE: str(pid_file)}``: ``proc``
    itself when cold; when warm, the zygote's child, whose pid the client wrote to ``pid_file``. A signal sent to
    it reaches the run at once, as for a user's process (the client then exits of the same signal)."""
    if proc.args[1] != str(CLIENT):
        return proc.pid
    if not wait_for(pid_file.is_file, proc, timeout=60):
        raise AssertionError(f"the zygote client wrote no pid to {pid_file}")
    return int(pid_file.read_text())


def run_cli(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    cwd: Path = REPO,
    warm: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` as a user would; returns the completed process (text output). Warnings are
    shown: tests see what users see."""
    return subprocess.run(
        command(module, *args, warm=warm),
        capture_output=True,
        text=True,
        input=input,
        env=_launch_env(env),
        timeout=timeout,
        cwd=cwd,
    )


def run_module(
    module: str, *args: str, cwd: Path, timeout: float = 300, warm: bool = True
) -> subprocess.CompletedProcess:
    """``run_cli`` with Python warnings silenced (the report tests read the output, not the warnings)."""
    return run_cli(module, *args, env={"PYTHONWARNINGS": "ignore"}, timeout=timeout, cwd=cwd, warm=warm)


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 240) -> bool:
    """Poll ``predicate`` (a state: a file, a step count) until it holds, ``proc`` exits or ``timeout``
    seconds pass (a bound against hangs, not a guess at speed). Returns whether the state was reached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def read_step(path: Path) -> int:
    """The step a ``StepFile`` last wrote, or -1 if none yet."""
    return int(path.read_text()) if path.is_file() else -1
