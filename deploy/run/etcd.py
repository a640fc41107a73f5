"""One etcd server on loopback: the consensus store the region databases' Patroni members elect through.

Patroni keeps each region's leader key in etcd with a TTL (ARCHITECTURE.md §3, "Highly
available region databases"); etcd alone decides who may run the primary, so two members
can never both believe they lead. A local cluster runs one etcd member for all of its
regions (each region is its own Patroni scope under ``/ridgeline/``): it is the one part
here that is not replicated, which a production deployment fixes with three or five etcd
members on their own machines. The binary is Debian's ``etcd-server`` package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ridgeline.deploy.run.processes import AdoptedProcess, ProcessHandle, alive, command_line, free_port, stop
from ridgeline.trust.private_files import CHILD_UMASK, open_private_append, private_dir, write_private

__all__ = ["EtcdError", "EtcdServer", "require_binary"]

_HOST = "127.0.0.1"
_RECORD = "etcd.json"
#: How long a health probe may take; etcd answers in milliseconds once it serves.
_PROBE_TIMEOUT_SECONDS = 1.0


class EtcdError(RuntimeError):
    """etcd is missing, or did not come up; the message says which package or log to look at."""


def require_binary(name: str, package: str) -> str:
    """The path of ``name`` on PATH, or an error naming the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        raise EtcdError(f"{name} is not installed: `apt-get install -y {package}` (Debian's {package} package), then try again")
    return path


class EtcdServer:
    """A one-member etcd cluster with its data under ``data_dir``; ``stop()`` ends it (SIGTERM, then SIGKILL).

    Its ports and pid are kept in ``<data_dir>/etcd.json``: the next start reuses the ports
    (the Patroni members know the client port, etcd's data its peer port), adopts an etcd
    that a SIGKILLed parent left serving instead of starting a second one, and another
    process (``ridgeline down``) stops it by that record.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        record = self._record()
        self.client_port = int(record.get("client_port") or free_port())
        self._peer_port = int(record.get("peer_port") or free_port())
        recorded = int(record.get("pid") or 0)
        self._process: ProcessHandle | None = AdoptedProcess(recorded) if recorded and alive(recorded) and "etcd" in command_line(recorded) else None

    @property
    def endpoint(self) -> str:
        """host:port of the client API (what Patroni's ``etcd3.hosts`` names)."""
        return f"{_HOST}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout_seconds: float = 30.0) -> None:
        """Starts etcd (or adopts the recorded one) and returns once its /health answers true; raises EtcdError otherwise."""
        if self._process is not None and self._process.poll() is None and self.healthy():
            return
        binary = require_binary("etcd", "etcd-server")
        private_dir(self.data_dir)
        client = f"http://{self.endpoint}"
        peer = f"http://{_HOST}:{self._peer_port}"
        command = [
            binary, "--name", "ridgeline", "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"ridgeline={peer}", "--initial-cluster-state", "new",
            # Leader keys carry TTLs of a few seconds: etcd's own election must be quicker.
            "--heartbeat-interval", "100", "--election-timeout", "1000",
        ]  # fmt: skip
        log_path = self.data_dir / "etcd.log"
        with open_private_append(log_path) as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, umask=CHILD_UMASK, start_new_session=True)
        self._process = process
        write_private(self.data_dir / _RECORD, json.dumps({"client_port": self.client_port, "peer_port": self._peer_port, "pid": process.pid}))
        deadline = time.monotonic() + timeout_seconds
        while not self.healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log_path.read_text(errors="replace")[-2000:]
                raise EtcdError(f"etcd did not become healthy on {self.endpoint} within {timeout_seconds:g} s; {log_path} ends with:\n{tail}")
            time.sleep(0.1)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=_PROBE_TIMEOUT_SECONDS) as reply:
                return json.loads(reply.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stops the etcd this object started or adopted; idempotent."""
        if self._process is not None:
            stop(self._process, timeout_seconds)
            self._process = None

    def _record(self) -> dict[str, object]:
        try:
            return dict(json.loads((self.data_dir / _RECORD).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return {}
