"""A local stand-in for an outside payment provider (ARCHITECTURE.md §1).

It runs as its own process with its own database and speaks HTTP/JSON, so settlement
meets the failures a real provider has: latency, errors, outages and lost replies
(see ``faults.py``). Ridgeline talks to it only through ``ridgeline.flows.payments``.
"""

# ``process`` starts it as a child (GatewayProcess); ``server`` is that child's main;
# the ledger, faults, metrics and HTTP api are its inside.
__all__ = ["process", "server"]
