"""A live `storesense fusion` process for tests: started until it listens, stopped with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def cli(*args: str) -> list[str]:
    """The storesense command line with ``args``, in this Python."""
    return [sys.executable, "-m", "storesense.cli", *args]


def start_fusion(*args: str, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start `storesense fusion ARGS`; return the process and what it printed until it listened."""
    proc = subprocess.Popen(cli("fusion", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    seen = ""
    deadline = time.monotonic() + timeout
    while "listening on" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stdout.readline()
    if "listening on" not in seen:
        proc.kill()
        raise AssertionError(f"fusion did not start: {seen!r} rc={proc.poll()}")
    return proc, seen


def interrupt(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """Ctrl-C the process and return the rest of its output (killed if it does not end in ``timeout``)."""
    try:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out
