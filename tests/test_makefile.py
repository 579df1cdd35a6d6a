"""`make tensorboard` serves on the loopback interface unless the user asks otherwise."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.run import REPO, wait_for

VENV = Path(sys.executable).parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on ``port`` (from /proc/net/tcp{,6}; state 0A = LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.mark.e2e
def test_make_tensorboard_binds_to_loopback(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        ["make", "-o", f"{VENV}/.installed", f"VENV={VENV}", f"TB_PORT={port}", "tensorboard"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: bool(_listening_addresses(port)), proc, timeout=120)  # a state: the port is bound
        addresses = _listening_addresses(port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert addresses == {"0100007F"}, (addresses, out[-2000:])  # 127.0.0.1 only, no wildcard or external bind


def test_make_tensorboard_host_is_the_users_choice() -> None:
    out = subprocess.run(
        ["make", "-n", "-o", f"{VENV}/.installed", "TB_HOST=0.0.0.0", "tensorboard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--host 0.0.0.0" in out


@pytest.mark.e2e
def test_make_test_gpu_skips_cleanly_without_cuda(request: pytest.FixtureRequest) -> None:
    """`make test-gpu` is pytest on tests/gpu; on a machine without CUDA the tier collects (its imports work) and
    skips every test, saying why."""
    import torch

    from tests.helpers.gpu import DEVICE

    if torch.cuda.is_available():
        return  # on a GPU machine the tier runs for real (make test-gpu)
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", f"{VENV}/.installed", f"VENV={VENV}", "test-gpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert dry.split() == [f"{VENV}/bin/python", "-m", "pytest", "-q", "tests/gpu"], dry
    tier = [item for item in request.session.items if item.nodeid.startswith("tests/gpu/")]
    if tier and DEVICE == "cuda":  # this session collected the tier, with the same conftest files: read its verdict
        reasons = [m.kwargs.get("reason", "") for item in tier for m in item.iter_markers("skip")]
        assert len(reasons) == len(tier) and all("no CUDA device" in r for r in reasons), reasons
        return
    env = {k: v for k, v in os.environ.items() if k != "DDPM_TEST_DEVICE"}  # a session without the tier: run it
    proc = subprocess.run(
        ["make", "-o", f"{VENV}/.installed", f"VENV={VENV}", "test-gpu", "ARGS=-rs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" not in proc.stdout and " skipped" in proc.stdout and "no CUDA device" in proc.stdout, proc.stdout[
        -2000:
    ]
