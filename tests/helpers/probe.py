"""A module that tests/test_zygote.py launches cold and warm: it prints what its launch is made of (argv, working
directory, environment, threads, stdin, warnings), then ends as its first argument says."""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings


def main() -> None:
    how, *rest = sys.argv[1:]
    warnings.warn("a warning from the run", UserWarning, stacklevel=1)
    warnings.warn("a deprecation in __main__", DeprecationWarning, stacklevel=1)  # shown by default: __main__'s own
    facts = {
        "argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "name": __name__,
        "spec": __spec__.name,
        "env": os.environ.get("PROBE"),
        "threads": __import__("torch").get_num_threads() if "threads" in rest else None,
        "stdin": sys.stdin.read() if how != "wait" else None,
        "stdout_tty": sys.stdout.isatty(),
        "sigint": getattr(signal.getsignal(signal.SIGINT), "__name__", str(signal.getsignal(signal.SIGINT))),
    }
    print("to stderr", file=sys.stderr, flush=True)  # before stdout's line: a reader of that line has all of stderr
    print(json.dumps(facts, sort_keys=True), flush=True)
    if how == "exit":
        sys.exit(int(rest[0]))
    if how == "raise":
        raise ValueError("boom")
    if how == "kill":
        os.kill(os.getpid(), getattr(signal, rest[0]))
    if how == "wait":  # until a signal from outside ends it
        signal.pause()


if __name__ == "__main__":
    main()
