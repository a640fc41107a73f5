"""``ridgeline up --ha``: every local region database as a Patroni cluster of three members over one etcd.

What the cluster file's ``region_databases = "patroni"`` asks for (ARCHITECTURE.md §3,
"Highly available region databases"). The quick start keeps one PostgreSQL per region;
this is for the drills (``kill-region-primary``) and for trying what production runs. All
of it lives under ``<state dir>/patroni/``: the etcd member in ``etcd/``, each region's
members in ``<region>/`` and their passwords in ``<region>.secrets/``, so ``ridgeline
down`` and a drill attached from another terminal open the same clusters (:meth:`HaDatabases.open`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ridgeline.deploy.run.etcd import EtcdServer
from ridgeline.deploy.run.patroni import PatroniCluster
from ridgeline.trust.private_files import private_dir

__all__ = ["HaDatabases"]


class HaDatabases:
    """One etcd and a Patroni cluster per region under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.etcd: EtcdServer | None = None
        self.regions: dict[str, PatroniCluster] = {}

    @classmethod
    def open(cls, root: Path) -> HaDatabases:
        """The clusters a running (or SIGKILLed) ``ridgeline up`` started under ``root``."""
        opened = cls(root)
        for layout in sorted(Path(root).glob("*/members.json")):
            opened.regions[layout.parent.name] = PatroniCluster.open(layout.parent)
        return opened

    def start(self, regions: list[str]) -> dict[str, str]:
        """Starts etcd and every region's members (in parallel); returns region -> its database's multi-host URL."""
        private_dir(self.root)
        self.etcd = EtcdServer(self.root / "etcd")
        self.etcd.start()
        self.regions = {region: PatroniCluster(self.root / region, region, self.etcd.endpoint) for region in regions}

        def start(region: str) -> tuple[str, str]:
            cluster = self.regions[region]
            cluster.start()
            return region, cluster.create_database(f"ridgeline_{region.replace('-', '_')}")

        with ThreadPoolExecutor(max(len(regions), 1)) as pool:
            return dict(pool.map(start, regions))

    def stop(self) -> None:
        """Every region's members, then etcd (also the etcd a SIGKILLed `up` left, found by its record)."""
        with ThreadPoolExecutor(max(len(self.regions), 1)) as pool:
            list(pool.map(PatroniCluster.stop, self.regions.values()))
        (self.etcd or EtcdServer(self.root / "etcd")).stop()
