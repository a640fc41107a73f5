"""Booking workflows after the hold: Prefect flows over micro-batches (settlement, expiry
sweeps, reconciliation) and the adapters they call. Today: :mod:`.payments`, the payment
gateway adapter (with :mod:`.circuit_breaker`); the settlement flows come with the
settlement issue, and until then the node's own sweeper expires lapsed holds."""
