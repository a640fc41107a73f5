"""Runs ``ridgeline console`` as a child (``ridgeline up`` supervises it), and the local login token.

``up`` mints one ``sre`` token for the local operator at every start, into
``<state dir>/console.token`` (0600, like the cluster's other secrets), and prints a
login link that carries it in the URL's fragment: the browser fills the form from it and
never sends it in a request line, so no access log holds it.
"""

from __future__ import annotations

from pathlib import Path

from ridgeline.deploy.run.processes import UrlChild, ridgeline_command, spawn_ready
from ridgeline.trust import tokens
from ridgeline.trust.certs import CertsDir
from ridgeline.trust.identity import Role
from ridgeline.trust.private_files import write_private

TOKEN_FILE = "console.token"
#: A week: the local operator logs in again after that (or after the next `up`).
LOCAL_TOKEN_TTL_SECONDS = 7 * 24 * 3600
LOCAL_PRINCIPAL = "sre"


def write_local_token(certs: CertsDir | None, state_dir: Path) -> Path:
    """A fresh ``sre`` token for the local console in ``state_dir`` (0600); an insecure cluster's console admits any token."""
    token = "insecure" if certs is None else tokens.issue(certs.ca_key.read_bytes(), Role.SRE, LOCAL_PRINCIPAL, ttl_seconds=LOCAL_TOKEN_TTL_SECONDS)
    path = state_dir / TOKEN_FILE
    write_private(path, token + "\n")
    return path


def login_link(url: str, token_path: Path) -> str:
    """The console's login page with the token in the fragment (never sent to the server)."""
    return f"{url}/login#token={token_path.read_text(encoding='utf-8').strip()}"


class ConsoleProcess(UrlChild):
    """``ridgeline console`` for a cluster file; :attr:`url` once it serves."""

    def __init__(self, certs: CertsDir | None, cluster_file: Path, state_dir: Path, *, listen: str = "127.0.0.1:0", log_path: Path | None = None) -> None:
        """``listen`` with a port: a restart comes back where the operator's browser points."""
        security = ["--certs-dir", str(certs.path)] if certs is not None else ["--insecure"]
        command = ridgeline_command(*security, "console", "--cluster", str(cluster_file), "--state-dir", str(state_dir), "--listen", listen)
        super().__init__(spawn_ready(command, what="the operator console", log_path=log_path, new_session=True), "http" if certs is None else "https")
