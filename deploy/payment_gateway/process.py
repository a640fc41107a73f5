"""Runs ``ridgeline gateway`` as a child process: for the demo, the benchmark and the tests."""

from __future__ import annotations

import re
import subprocess
import sys

from ridgeline.deploy.run.processes import stop_process

_READY = re.compile(r"^READY gateway (http://\S+)$")


class GatewayProcess:
    """The stand-in gateway on its own database; :attr:`url` once started."""

    def __init__(self, database_url: str, *, seed: int | None = 7) -> None:
        command = [sys.executable, "-m", "ridgeline.deploy.cli", "gateway", "--database-url", database_url]
        if seed is not None:
            command += ["--seed", str(seed)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._process.stdout is not None
        url = next((m.group(1) for m in map(_READY.match, map(str.strip, self._process.stdout)) if m), None)
        if url is None:
            raise OSError(f"the payment gateway exited with {self._process.wait()} before READY")
        self.url: str = url

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self, timeout_seconds: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after the timeout; returns the exit status."""
        return stop_process(self._process, timeout_seconds)
