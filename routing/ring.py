"""Which live node of a region should own each basecamp: consistent hashing (uhashring).

The ring only *proposes*; a lease row in the region database grants (see leases.py).
Consistent hashing keeps proposals stable as membership changes: a joining node takes
about 1/N of the basecamps, and a leaving node's basecamps spread over the survivors,
while every other basecamp keeps its owner. uhashring's ketama ring (160 virtual points
per node) gives that spread; every node computes the same ring from the same members.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from uhashring import HashRing


def propose_owners(node_ids: Sequence[str], basecamp_ids: Iterable[str]) -> dict[str, str]:
    """basecamp_id -> node_id for every basecamp, or an empty dict when no node is live."""
    if not node_ids:
        return {}
    ring = HashRing(nodes=sorted(node_ids))
    return {basecamp_id: ring.get_node(basecamp_id) for basecamp_id in basecamp_ids}
