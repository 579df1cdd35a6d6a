"""A warm start for the tests' entry-point launches: one process imports torch, Lightning, Hydra and the package once,
then forks a child per launch that runs ``python -m <module> <args>`` as a fresh interpreter would.

Importing Lightning costs ~5 s of CPU (it imports all of torchmetrics, torchvision.models, torch._dynamo, scipy); the
suite launches the entry points ~70 times. A child gets the launch's argv, environment, working directory and standard
streams (passed as file descriptors by ``zygote_client.py``, the process the test actually started), warning filters
rebuilt from its ``PYTHONWARNINGS``, torch's thread count from its ``OMP_NUM_THREADS``, fresh random seeds, default
signal handlers, its own process group, and exits as the interpreter does (threads joined, atexit handlers, flushes)
but without the module teardown, which would copy every inherited page. The zygote's objects stay frozen (``gc.freeze``)
in the child: collecting them would copy their pages too (~2 s of CPU per launch).
The client forwards SIGTERM/SIGINT to the child and exits with the child's status (re-raising the signal it died of);
when the client dies (a test's timeout kills it) the child's process group is killed.

Not faithful, so tests that depend on it launch cold (``run_cli(..., warm=False)``): import-time output (none today:
checked by the cold launches), and the delay between the client's death and the child's.

Run as ``python -m tests.helpers.zygote <socket path>``; prints ``ready`` on stdout once it listens (before its
imports: a launch made meanwhile waits in the socket's backlog). Under pytest-xdist the controller process starts one
for all its workers (tests/conftest.py).
"""

from __future__ import annotations

import warnings

BASE_FILTERS = list(warnings.filters)  # the interpreter's defaults, before any import adds its own

import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pkgutil  # noqa: E402
import selectors  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# The modules run with ``-m`` are not imported here: runpy would warn that they are already in sys.modules.
ENTRY_POINTS = {"train", "sample", "evaluate", "report", "classifier", "__main__"}
HEADER_MAX = 1 << 20


def preload() -> tuple[list[tuple], int]:
    """Import the heavy libraries and every package module that is not an entry point; returns the warning filters
    the imports added (a fresh interpreter has them in front of its ``PYTHONWARNINGS`` filters) and torch's thread
    count without ``OMP_NUM_THREADS`` (the zygote starts without it)."""
    import hydra  # noqa: F401
    import lightning.pytorch  # noqa: F401
    import torch
    import torchmetrics  # noqa: F401

    default_threads = torch.get_num_threads()

    import ddpm_lightning

    for info in pkgutil.walk_packages(ddpm_lightning.__path__, "ddpm_lightning."):
        if info.name.rsplit(".", 1)[-1] not in ENTRY_POINTS:
            importlib.import_module(info.name)
    return [f for f in warnings.filters if f not in BASE_FILTERS], default_threads


def _child(request: dict, fds: list[int], owned: list, added_filters: list[tuple], default_threads: int) -> None:
    """In the forked child: become the launch described by ``request`` and run its module as ``__main__``; never
    returns (the interpreter exits with the module's exit status, as ``python -m`` does)."""
    import random
    import runpy

    import numpy as np
    import torch

    for thing in owned:  # the zygote's sockets, selector and pidfds
        thing.close() if hasattr(thing, "close") else os.close(thing)
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's, unless the launch ignores it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for ignored in request["ignored"]:
        signal.signal(ignored, signal.SIG_IGN)
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    options = [o for o in request["env"].get("PYTHONWARNINGS", "").split(",") if o]
    warnings.filters[:] = BASE_FILTERS
    sys.warnoptions[:] = options
    warnings._processoptions(options)  # noqa: SLF001  (what the interpreter does with PYTHONWARNINGS at start)
    warnings.filters[:0] = added_filters
    warnings._filters_mutated()  # noqa: SLF001
    threads = request["env"].get("OMP_NUM_THREADS")
    # torch at start: OMP_NUM_THREADS, at most its default (the cores)
    torch.set_num_threads(min(int(threads), default_threads) if threads else default_threads)
    random.seed()
    np.random.seed()
    module, args = request["module"], request["args"]
    sys.path[0] = request["cwd"]
    sys.argv = [module, *args]
    sys.orig_argv = [sys.executable, "-m", module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code
    _exit(code)


def _exit(code: object) -> None:
    """Exit as the interpreter does on ``sys.exit(code)`` (its non-daemon threads joined, atexit handlers, flushed
    streams, the status), without tearing down the modules and objects: in a forked child that writes to (so copies)
    every page inherited from the zygote, ~3 s of CPU per launch."""
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:
        print(code, file=sys.stderr)
        status = 1
    threading._shutdown()  # noqa: SLF001  (what Py_FinalizeEx does first)
    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _log_cost(request: dict, usage: os.struct_rusage) -> None:
    """With ``DDPM_ZYGOTE_LOG=<file>``: one JSON line per launch, its CPU seconds (its own and its children's: a
    multirun's joblib workers), the test that made it and its arguments. Where a suite's time goes."""
    path = os.environ.get("DDPM_ZYGOTE_LOG")
    if path:
        line = {
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "test": request["env"].get("PYTEST_CURRENT_TEST"),
            "module": request["module"],
            "args": request["args"],
        }
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


def serve(path: str) -> None:
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the test session ends, so does the zygote
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)  # from now on a launch waits in the backlog: "ready" comes before the imports
    print("ready", flush=True)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    added_filters, default_threads = preload()
    gc.collect()
    gc.freeze()  # the children share these objects copy-on-write; collecting them would copy every page
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, ("accept", None))
    children: dict[int, tuple[int, socket.socket]] = {}  # pid -> (pidfd, client connection)
    launches: dict[int, dict] = {}  # pid -> request

    def stop(*_: object) -> None:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for key, _ in selector.select():
            kind, pid = key.data
            if kind == "accept":
                conn, _ = listener.accept()
                header, fds, _, _ = socket.recv_fds(conn, HEADER_MAX, 3)
                request = json.loads(header.decode())
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    owned = [listener, selector, conn, *(x for child in children.values() for x in child)]
                    _child(request, fds, owned, added_filters, default_threads)
                for fd in fds:
                    os.close(fd)
                try:
                    os.setpgid(pid, pid)  # as the child does first: killpg works from now on
                except (PermissionError, ProcessLookupError):
                    pass
                pidfd = os.pidfd_open(pid)
                children[pid] = (pidfd, conn)
                launches[pid] = request
                selector.register(pidfd, selectors.EVENT_READ, ("exit", pid))
                selector.register(conn, selectors.EVENT_READ, ("client", pid))
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            elif kind == "exit":  # the child ended: its status to the client
                pidfd, conn = children.pop(pid)
                _, status, usage = os.wait4(pid, 0)
                _log_cost(launches.pop(pid), usage)
                selector.unregister(pidfd)
                if conn.fileno() in selector.get_map():
                    selector.unregister(conn)
                os.close(pidfd)
                try:
                    conn.sendall(json.dumps({"status": status}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()
            elif kind == "client" and not key.fileobj.recv(1):  # the client died (a timeout killed it): so does the run
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                selector.unregister(key.fileobj)


if __name__ == "__main__":
    serve(sys.argv[1])
    Path(sys.argv[1]).unlink(missing_ok=True)
