"""A warm launch (tests/helpers/zygote.py: the run forked from a process that imported everything once) is the same
run as a fresh interpreter: argv, working directory, environment, torch's threads, stdin, stdout and stderr, warning
filters from PYTHONWARNINGS, exit status, an uncaught exception, death by a signal, and signals sent from outside."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers.run import popen, run_cli

PROBE = "tests.helpers.probe"
CASES = {
    "facts": (["exit", "3", "threads"], {"OMP_NUM_THREADS": "1"}),  # torch alone would take one per core
    "uncaught": (["raise"], {}),
    "ignored warnings": (["exit", "0"], {"PYTHONWARNINGS": "ignore"}),
    "warning as error": (["exit", "0"], {"PYTHONWARNINGS": "error::UserWarning"}),
    "SIGKILL": (["kill", "SIGKILL"], {}),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(CASES))
def test_a_warm_launch_is_the_same_run_as_a_cold_one(case: str, tmp_path: Path) -> None:
    args, env = CASES[case]
    cold, warm = (
        run_cli(PROBE, *args, env={"PROBE": "x", **env}, cwd=tmp_path, warm=w, input="from stdin")
        for w in (False, True)
    )
    assert warm.args[1].endswith("zygote_client.py") and "-m" in cold.args  # the two kinds of launch
    assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout)
    if case == "facts":
        assert cold.returncode == 3 and '"threads": 1' in cold.stdout and '"stdin": "from stdin"' in cold.stdout
        assert f'"cwd": "{tmp_path}"' in cold.stdout and '"env": "x"' in cold.stdout
    if case in ("uncaught", "warning as error"):  # the traceback's frames above the module's differ (runpy's)
        assert warm.stderr.splitlines()[-1] == cold.stderr.splitlines()[-1]
        assert cold.returncode == 1
    else:
        assert warm.stderr == cold.stderr
    if case == "ignored warnings":
        assert cold.stderr == "to stderr\n"
    if case == "SIGKILL":
        assert cold.returncode == -signal.SIGKILL


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background job (CI's `make test &`) starts with SIGINT ignored


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sent_to_a_warm_launch_reaches_the_run(sig: signal.Signals, tmp_path: Path) -> None:
    results = []
    for warm in (False, True):
        proc = popen(
            PROBE,
            "wait",
            warm=warm,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_restore_sigint,
        )
        assert proc.stdout.readline().startswith("{")  # a state: it runs (and waits for a signal)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        results.append((proc.returncode, proc.stderr.read().splitlines()[-1]))
    assert results[1] == results[0] and results[0][0] == -sig
