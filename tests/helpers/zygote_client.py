"""The process a warm launch starts (``python zygote_client.py <socket> <module> <args>``): it hands its argv,
environment, working directory and standard streams to the zygote (tests/helpers/zygote.py), which forks the run;
forwards SIGTERM/SIGINT to it, writes its pid to ``$DDPM_TEST_RUN_PID_FILE`` if set (a test that signals the run
itself), and exits as it did. Imports nothing heavy: it starts in milliseconds."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys


def main() -> None:
    path, module, *args = sys.argv[1:]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    # ignored signals stay ignored across exec: so in the run
    ignored = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) == signal.SIG_IGN]
    request = {"module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ), "ignored": ignored}
    socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
    replies = conn.makefile("rb")
    pid = json.loads(replies.readline())["pid"]
    pid_file = os.environ.get("DDPM_TEST_RUN_PID_FILE")  # where a test that signals the run itself reads its pid
    if pid_file:
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(pid))
        os.replace(pid_file + ".tmp", pid_file)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    line = replies.readline()
    if not line:
        sys.exit("zygote_client: the zygote closed the connection before the run ended")
    code = os.waitstatus_to_exitcode(json.loads(line)["status"])
    if code < 0:  # died of a signal: so does this process, so the test sees the same return code
        if -code != signal.SIGKILL:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
