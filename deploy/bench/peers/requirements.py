"""What the peer benchmark needs beyond the plain install, and the one message that says how to get it.

The peers are heavy (a Rust server binary from npm, DBOS and the Restate SDK from PyPI),
so only ``make bench-peers`` installs them; a run without them fails before starting
anything, naming that target.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: Where ``make bench-peers`` puts ``npm install @restatedev/restate-server`` (gitignored).
RESTATE_PREFIX = Path(os.environ.get("RIDGELINE_RESTATE_PREFIX", Path(__file__).resolve().parents[3] / ".bench" / "restate"))
_MODULES = {"dbos": "dbos", "restate": "restate-sdk", "hypercorn": "hypercorn", "psutil": "psutil"}


class PeersMissing(RuntimeError):
    """The bench extra or the Restate server binary is not installed."""


def restate_server_binary() -> Path:
    return RESTATE_PREFIX / "node_modules" / ".bin" / "restate-server"


def require_peers() -> Path:
    """The Restate server binary, once everything the benchmark needs is there; else PeersMissing naming ``make bench-peers``."""
    missing = [package for module, package in _MODULES.items() if importlib.util.find_spec(module) is None]
    binary = restate_server_binary()
    if not binary.exists():
        missing.append(f"the restate-server binary ({binary})")
    if missing:
        raise PeersMissing(f"the peer benchmark needs {', '.join(missing)}: run `make bench-peers` (installs the bench extra and the Restate server)")
    return binary
