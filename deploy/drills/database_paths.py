"""A node's path to its region database through fault proxies, so a drill can cut that path alone.

The ``cut-node-from-database`` drill (issue 12) takes one node's database away while its
clients still reach it: the node's database URL is rewritten to point at one
:class:`FaultProxy` per database host (one for a single server, three for a Patroni
cluster's multi-host URL), and blackholing them is the cut. Nothing else changes: the
passfile, TLS parameters and ``target_session_attrs`` stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import make_url

from ridgeline.deploy.drills.fault_proxy import FaultProxy

__all__ = ["ProxiedDatabase", "through_proxies"]


@dataclass
class ProxiedDatabase:
    """The rewritten URL and the proxies behind it; :meth:`close` ends them (and the path)."""

    url: str
    proxies: list[FaultProxy]

    def cut(self, *, lasting_seconds: float | None = None) -> None:
        """Blackhole every path: nothing answers, nothing is refused, as in a network partition."""
        for proxy in self.proxies:
            proxy.set_mode("blackhole", lasting_seconds=lasting_seconds)

    def restore(self) -> None:
        for proxy in self.proxies:
            proxy.set_mode("pass")

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()


def through_proxies(url: str) -> ProxiedDatabase:
    """``url`` (single host, or libpq's ``host=h1,h2&port=p1,p2`` form) with every host behind a fault proxy."""
    parsed = make_url(url)
    query = dict(parsed.query)
    if "host" in query:
        hosts, ports = str(query["host"]).split(","), str(query["port"]).split(",")
        assert len(hosts) == len(ports), f"as many ports as hosts in {parsed.render_as_string(hide_password=True)}"
        proxies = [FaultProxy(host, int(port)) for host, port in zip(hosts, ports, strict=True)]
        query["host"] = ",".join(p.address.rsplit(":", 1)[0] for p in proxies)
        query["port"] = ",".join(p.address.rsplit(":", 1)[1] for p in proxies)
        rewritten = parsed.set(query=query)
    else:
        assert parsed.host and parsed.port, f"a database URL with a host and a port, not {parsed.render_as_string(hide_password=True)}"
        proxies = [FaultProxy(parsed.host, parsed.port)]
        host, port = proxies[0].address.rsplit(":", 1)
        rewritten = parsed.set(host=host, port=int(port))
    return ProxiedDatabase(rewritten.render_as_string(hide_password=False), proxies)
