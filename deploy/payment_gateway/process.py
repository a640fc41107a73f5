"""Runs ``ridgeline gateway`` as a child process: for the demo, the benchmark and the tests."""

from __future__ import annotations

from ridgeline.deploy.run.processes import ridgeline_command, spawn_ready


class GatewayProcess:
    """The stand-in gateway on its own database; :attr:`url` once started."""

    def __init__(self, database_url: str, *, seed: int | None = 7) -> None:
        args = ["gateway", "--database-url", database_url]
        if seed is not None:
            args += ["--seed", str(seed)]
        self._child = spawn_ready(ridgeline_command(*args), what="the payment gateway")
        self.url: str = self._child.address

    @property
    def pid(self) -> int:
        return self._child.pid

    def stop(self, timeout_seconds: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after the timeout; returns the exit status."""
        return self._child.stop(timeout_seconds)
