"""Runs ``ridgeline gateway`` as a child process: for the demo, the benchmark and the tests."""

from __future__ import annotations

from ridgeline.deploy.run.processes import ProcessHandle, ridgeline_command, spawn_ready
from ridgeline.trust.credentials import Transport


class GatewayProcess:
    """The stand-in gateway on its own database; :attr:`url` once started.

    ``transport`` is how it serves: over TLS with the node pair of its certificates
    directory (the URL is ``https://``), or, insecure, plain HTTP.
    """

    def __init__(self, database_url: str, transport: Transport, *, seed: int | None = 7, listen: str = "127.0.0.1:0") -> None:
        """``listen`` with a port: a restart comes back where the nodes already pay."""
        assert transport.principal is None, "the gateway serves with the node pair, not a client's"
        self.database_url = database_url
        # The security options are the CLI's global ones: before the subcommand.
        args = ["--certs-dir", str(transport.certs.path)] if transport.certs is not None else ["--insecure"]
        args += ["gateway", "--database-url", database_url, "--listen", listen]
        if seed is not None:
            args += ["--seed", str(seed)]
        self._child = spawn_ready(ridgeline_command(*args), what="the payment gateway")
        self.url: str = self._child.address
        assert self.url.startswith(f"{transport.http_scheme}://"), f"the gateway serves {self.url}, not {transport.http_scheme}"

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def process(self) -> ProcessHandle:
        return self._child.process

    @property
    def listen(self) -> str:
        """host:port it serves on, to start it again there."""
        return self.url.split("://", 1)[1].rstrip("/")

    def stop(self, timeout_seconds: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after the timeout; returns the exit status."""
        return self._child.stop(timeout_seconds)
