"""Which node serves a basecamp, and the client that routes calls to it.

Today: :mod:`.client`, a BookingService client with deadlines and bounded retries of
retryable failures, and :mod:`.retry`, the one backoff policy every room's retry loop
uses. Consistent-hash ownership and leases land here with the cluster.
"""
