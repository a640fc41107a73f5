"""The booking domain: holds, the state machine's moves, expiry, queries, ownership refusals and the catalog.

Plain functions over a connection or an engine, testable without gRPC. :mod:`.history`
(the history row) and :mod:`.idempotency` (the record and its replay) are composed into
this room's statements and are not called from other rooms.
"""

__all__ = ["catalog", "expiry", "group_commit", "holds", "model", "ownership", "queries", "sweeper", "transitions"]
