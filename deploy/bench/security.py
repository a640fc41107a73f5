"""How a benchmark's throwaway processes speak: mutual TLS with certificates made for the run, or plaintext.

Benchmarks measure what production runs, so they are secure by default: each run makes
a CA, the node pair and the local clients in its own temporary directory
(:func:`~ridgeline.trust.certs.ensure_local`), starts every node and coordinator with
it, and calls them in the role the RPC needs (trust/policy.py: desks book, planners
plan). Plaintext is the explicit exception: ``ridgeline --insecure bench …``, or the
plaintext phases that price mTLS and authorization beside it (``--insecure-baseline``).

Each booking thread is a desk of its own (``desk-1``, ``desk-2``, …): the servers limit
each principal's rate (trust/fair_share.py), and one principal for every thread would
measure that limit instead of the node, where N threads stand for N desks at N counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ridgeline.deploy.run.processes import ridgeline_command
from ridgeline.trust.certs import CertsDir, create_client, ensure_local
from ridgeline.trust.credentials import Transport
from ridgeline.trust.identity import Role

__all__ = ["BenchSecurity", "DESKS_MAX"]

#: More desks than a benchmark has threads would be a bug: each is a key pair to make.
DESKS_MAX = 512


@dataclass(frozen=True)
class BenchSecurity:
    """A run's certificates directory (None: plaintext, no authentication), for its children and clients."""

    certs: CertsDir | None

    @classmethod
    def made_in(cls, root: Path) -> BenchSecurity:
        """Mutual TLS with a CA, node pair and local clients made under ``root`` (the run's temp dir)."""
        certs = CertsDir(root / "certs")
        ensure_local(certs)
        return cls(certs)

    @classmethod
    def plaintext(cls) -> BenchSecurity:
        return cls(None)

    @property
    def secure(self) -> bool:
        return self.certs is not None

    @property
    def label(self) -> str:
        """How reports name it."""
        return "mTLS" if self.secure else "plaintext"

    def command(self, *args: str) -> list[str]:
        """A ``ridgeline`` child (node, coordinator) with this run's security before the subcommand."""
        assert args, "a subcommand to run"
        flags = ["--certs-dir", str(self.certs.path)] if self.certs is not None else ["--insecure"]
        return ridgeline_command(*flags, *args)

    def node(self) -> Transport:
        """The node pair: how the gateway serves and how settlement pays."""
        return Transport.insecure() if self.certs is None else Transport.from_dir(self.certs.path)

    def client(self, principal: str) -> Transport:
        """How this process calls as one of the local clients (``desk``, ``planner``, ``sre``)."""
        if self.certs is None:
            return Transport.insecure()
        return Transport.from_dir(self.certs.path, principal=principal)

    def desks(self, count: int) -> list[Transport]:
        """One transport per booking thread, each presenting its own desk's pair (made here when missing)."""
        assert 1 <= count <= DESKS_MAX, f"{count} desks (1 to {DESKS_MAX})"
        if self.certs is None:
            return [Transport.insecure()] * count
        principals = [f"desk-{number}" for number in range(1, count + 1)]
        for principal in principals:
            if not self.certs.client_cert(principal).exists():
                create_client(self.certs, Role.DESK, principal)
        desks = [self.client(principal) for principal in principals]
        assert len({d.principal for d in desks}) == count, "every thread a desk of its own"
        return desks
