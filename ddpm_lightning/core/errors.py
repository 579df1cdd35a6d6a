"""The error types the entry points turn into a single clear line and a non-zero exit (plain Python: the CLI
catches them without loading torch or Lightning)."""


class DDPMError(ValueError):
    """Bad user input (config value, data file, checkpoint): the message is shown as is."""


class RunInterrupted(BaseException):
    """Training was interrupted by a signal after its state was saved (lit/resilience.py, lit/startup.py);
    ``code`` is the exit status: SIGTERM 143 = 128 + 15, Ctrl-C 130 = 128 + 2."""

    def __init__(self, signal_name: str, code: int, detail: str, started: bool = True) -> None:
        super().__init__(f"interrupted by {signal_name}: {detail}")
        self.signal_name, self.code, self.started = signal_name, code, started
