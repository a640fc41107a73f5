"""The console's calls to the operator API (``operator.proto``): in-flight work, timelines, bulk retries.

Every regional node serves OperatorService for its region, and any member answers reads
and runs retries (the owner's settlement loop takes the step), so a call goes to a live
member of the region; one that answers UNAVAILABLE is replaced by another after the
cluster's view is refreshed, once. Actions carry the idempotency key the form was
rendered with, so a re-posted form repeats nothing; the channels carry the logged-in
person's token (:class:`.backend.ConsoleBackends`), so the actor on record is the person,
not the console.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc

from ridgeline.routing import ClusterClient
from ridgeline.routing.coordinator_set import CoordinatorSet
from ridgeline.v1 import operator_pb2 as opb
from ridgeline.v1 import operator_pb2_grpc as opb_grpc
from ridgeline.v1 import trek_pb2 as tpb

Reply = TypeVar("Reply")

#: Deadline of a read, seconds.
READ_TIMEOUT_SECONDS = 5.0
#: How long a bulk retry waits for the settlement steps it made due (the proto bounds it by 60).
BULK_WAIT_SECONDS = 15
#: A bulk call's deadline: its wait plus room for the re-reads.
BULK_TIMEOUT_SECONDS = BULK_WAIT_SECONDS + 15.0
#: Bookings one bulk form acts on at most (the proto's own bound is 500).
BULK_LIMIT = 100
#: Rows each in-flight table shows.
IN_FLIGHT_PAGE_SIZE = 100
_ATTEMPTS_MAX = 2


class OperatorCalls:
    """OperatorService calls over the console's routing client (thread-safe)."""

    def __init__(self, client: ClusterClient, coordinators: CoordinatorSet | None) -> None:
        self._client = client
        self._coordinators = coordinators

    def in_flight(self, region: str, kind: int, *, older_than_seconds: int, basecamp_id: str = "", page_token: str = "") -> opb.ListInFlightResponse:
        request = opb.ListInFlightRequest(
            kind=kind, older_than_seconds=older_than_seconds, basecamp_id=basecamp_id, page_size=IN_FLIGHT_PAGE_SIZE, page_token=page_token
        )
        return self._call(region, lambda stub: stub.ListInFlight, request, READ_TIMEOUT_SECONDS)

    def timeline(self, region: str, booking_id: str) -> opb.BookingTimeline:
        return self._call(region, lambda stub: stub.GetTimeline, opb.GetTimelineRequest(booking_id=booking_id), READ_TIMEOUT_SECONDS)

    def bulk_retry(self, region: str, *, key: str, basecamp_id: str, stuck_seconds: int, reason: str) -> opb.BulkActionResponse:
        """Retries the settlement of every booking of ``region`` the filter selects; each outcome as re-read after its step."""
        assert key and stuck_seconds > 0, "a keyed bulk over stuck bookings"
        request = opb.BulkActionRequest(
            idempotency_key=key, action=opb.OPERATOR_ACTION_RETRY_SETTLEMENT, reason=reason, limit=BULK_LIMIT, wait_seconds=BULK_WAIT_SECONDS,
            filter=opb.BookingFilter(basecamp_id=basecamp_id, stuck_seconds=stuck_seconds),
        )
        return self._call(region, lambda stub: stub.BulkAction, request, BULK_TIMEOUT_SECONDS)

    def unfinished_treks(self, older_than_seconds: int) -> list[tpb.Trek]:
        """Treks not final and older than the threshold, from whichever coordinator leads (none: the cluster runs no coordinator)."""
        if self._coordinators is None:
            return []
        request = tpb.ListTreksRequest(stuck_after_seconds=max(older_than_seconds, 1), page_size=IN_FLIGHT_PAGE_SIZE)
        return list(self._coordinators.call("ListTreks", request, timeout_seconds=READ_TIMEOUT_SECONDS).treks)

    def _call(self, region: str, method: Callable[[opb_grpc.OperatorServiceStub], Callable[..., Reply]], request: object, timeout: float) -> Reply:
        for attempt in range(_ATTEMPTS_MAX):
            stub = opb_grpc.OperatorServiceStub(self._client.channel(self._client.region_member(region)))
            try:
                return method(stub)(request, timeout=timeout)
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE or attempt + 1 == _ATTEMPTS_MAX:
                    raise
                self._client.cluster_info()  # a fresh view: the dead member drops out
        raise AssertionError("unreachable: the last attempt raises")
