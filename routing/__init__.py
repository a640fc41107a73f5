"""Which node serves a basecamp, and the desk client that sends each call there.

The client surface: :class:`.client.BookingClient` (one node) and
:class:`.client.ClusterClient` (the whole cluster, routed by owner, from any seeds),
built from :mod:`.requests` (every BookingService request, with its idempotency key),
:mod:`.route` (where a call goes) and :mod:`.discovery` (the cluster's view from
ClusterInfo, and its errors). Ownership itself: :mod:`.ring` proposes an owner by
consistent hashing, :mod:`.leases` grants it with a fencing epoch in the region database,
and :mod:`.keeper` keeps a node's membership and leases (not imported here: importing it
registers the node's lease metrics in the process). :mod:`.retry` is the one backoff
policy every room's retry loop uses.
"""

from ridgeline.routing import leases
from ridgeline.routing.client import BookingClient, ClusterClient, DeskClient
from ridgeline.routing.discovery import ClusterUnreachable, UnknownBasecamp, failure_text, owner_hint
from ridgeline.routing.leases import Fence, fence_json, fence_sql
from ridgeline.routing.requests import book_request, hold_request, new_idempotency_key, night_range
from ridgeline.routing.retry import RetryPolicy
from ridgeline.routing.ring import propose_owners

__all__ = [
    "BookingClient",
    "ClusterClient",
    "ClusterUnreachable",
    "DeskClient",
    "Fence",
    "RetryPolicy",
    "UnknownBasecamp",
    "book_request",
    "fence_json",
    "failure_text",
    "fence_sql",
    "hold_request",
    "leases",
    "new_idempotency_key",
    "night_range",
    "owner_hint",
    "propose_owners",
]
