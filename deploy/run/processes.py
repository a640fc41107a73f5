"""Handles on the processes deploy/ starts, and on those another ``ridgeline`` process started.

A drill attached to a running ``ridgeline up`` restarts parts of it (a node, the
coordinator, the Prefect server); those restarts are children of the drill, not of
``up``, so both sides drive them by pid through the same shape as a Popen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol


class ProcessHandle(Protocol):
    """What is needed of a child process: a Popen, or an adopted pid (:class:`AdoptedProcess`)."""

    pid: int

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class AdoptedProcess:
    """A process started by another ``ridgeline`` process (e.g. a running ``ridgeline up``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not alive(self.pid):
            self.returncode = -signal.SIGKILL  # not our child: the real status is its parent's to know
        return self.returncode

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


def stop_process(process: ProcessHandle, timeout_seconds: float = 15.0) -> int:
    """SIGTERM (the child drains), then SIGKILL if it overstays; returns its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_seconds)
    returncode = process.poll()
    assert returncode is not None
    return returncode


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; an exited process its parent has not reaped yet (a zombie) does not."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def command_line(pid: int) -> str:
    """The process's command line (empty when it is gone): to check a recorded pid is still ours."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
