"""The composition root: wires the other rooms into processes, a local cluster, drills, benchmarks and the CLI.

Nothing outside deploy imports it except the tests. Its rooms: ``cli`` (the ``ridgeline``
command line), ``run`` (the processes it starts), ``cluster`` (cluster files, the local
cluster, status, the demo), ``drills`` (load, chaos, audit, fault proxies), ``bench``
(benchmark engines), ``console`` (the operator console in the browser) and
``payment_gateway`` (the stand-in provider).
"""

__all__ = ["bench", "cli", "cluster", "console", "drills", "payment_gateway", "run"]
