"""Runs ``ridgeline gateway`` as a child process: for the demo, the benchmark and the tests."""

from __future__ import annotations

from ridgeline.deploy.run.processes import UrlChild, ridgeline_command, spawn_ready
from ridgeline.trust.credentials import Transport


class GatewayProcess(UrlChild):
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
        super().__init__(spawn_ready(ridgeline_command(*args), what="the payment gateway"), transport.http_scheme)
