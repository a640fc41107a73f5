"""The operator API: OperatorService calls sent to the node that serves them, over a :class:`.client.ClusterClient`.

An action on a booking goes to the owner of the booking's basecamp (found with GetBooking
once, then remembered by the cluster view): a release is a fenced move that only the
owner makes, and the owner's settlement loop takes the step a retry or refund makes due.
A refusal naming the owner is followed at once, UNAVAILABLE and ABORTED back off, all
within one deadline and with the same idempotency key (invariant 7), as the desk
client does. A bulk action without a basecamp goes to each basecamp's owner of the
region in turn (each with the basecamp in its filter), so every release lands at its
owner; the outcomes are merged per booking. Reads go to any live node of the region.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc

from ridgeline.routing.client import ClusterClient
from ridgeline.routing.retry import RetryPolicy
from ridgeline.v1 import operator_pb2 as opb
from ridgeline.v1 import operator_pb2_grpc as opb_grpc

Response = TypeVar("Response")
#: Owner hints followed within one call (a basecamp moving twice in one call is rare).
_HOPS_MAX = 4
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION})


class OperatorClient:
    """OperatorService of a whole cluster; ``timeout_seconds`` bounds each call, its waits included."""

    def __init__(self, cluster: ClusterClient, *, timeout_seconds: float = 75.0, retry: RetryPolicy | None = None) -> None:
        self._cluster = cluster
        self._timeout_seconds = timeout_seconds
        self._retry = retry or RetryPolicy(attempts_max=8, backoff_base_seconds=0.05, backoff_cap_seconds=1.0)

    # ------------------------------------------------------------------ actions

    def retry_settlement(self, booking_id: str, *, reason: str = "", wait_seconds: int = 0, idempotency_key: str | None = None) -> opb.ActionOutcome:
        return self._act(lambda stub: stub.RetrySettlement, booking_id, reason, wait_seconds, idempotency_key)

    def release_hold(self, booking_id: str, *, reason: str = "", idempotency_key: str | None = None) -> opb.ActionOutcome:
        return self._act(lambda stub: stub.ReleaseHold, booking_id, reason, 0, idempotency_key)

    def refund_charge(self, booking_id: str, *, reason: str = "", wait_seconds: int = 0, idempotency_key: str | None = None) -> opb.ActionOutcome:
        return self._act(lambda stub: stub.RefundCharge, booking_id, reason, wait_seconds, idempotency_key)

    def bulk(self, request: opb.BulkActionRequest, region: str | None = None) -> opb.BulkActionResponse:
        """One action over a filter: at the filter's basecamp's owner, or at each basecamp's owner of ``region``."""
        if not request.idempotency_key:
            request = opb.BulkActionRequest(idempotency_key=str(uuid.uuid4()), **{f.name: v for f, v in request.ListFields()})
        if request.filter.basecamp_id:
            return self._at_owner(request.filter.basecamp_id, lambda stub: stub.BulkAction, request)
        if region is None:
            raise ValueError("a bulk action without a basecamp in its filter needs the region it runs in")
        merged = opb.BulkActionResponse()
        for camp in self._cluster.list_basecamps(region).basecamps:
            one = opb.BulkActionRequest()
            one.CopyFrom(request)
            one.filter.basecamp_id = camp.basecamp_id
            reply = self._at_owner(camp.basecamp_id, lambda stub: stub.BulkAction, one)
            merged.outcomes.extend(reply.outcomes)
            merged.truncated = merged.truncated or reply.truncated
        return merged

    # ------------------------------------------------------------------ reads

    def list_in_flight(self, request: opb.ListInFlightRequest, region: str | None = None) -> opb.ListInFlightResponse:
        return self._at_owner(self._basecamp_in(request.basecamp_id, region), lambda stub: stub.ListInFlight, request)

    def timeline(self, booking_id: str) -> opb.BookingTimeline:
        camp = self._cluster.get_booking(booking_id).basecamp_id
        return self._at_owner(camp, lambda stub: stub.GetTimeline, opb.GetTimelineRequest(booking_id=booking_id))

    def list_actions(self, request: opb.ListActionsRequest, region: str) -> opb.ListActionsResponse:
        return self._at_owner(self._basecamp_in("", region), lambda stub: stub.ListActions, request)

    # ------------------------------------------------------------------ routing

    def _act(self, call: Callable, booking_id: str, reason: str, wait_seconds: int, key: str | None) -> opb.ActionOutcome:
        request = opb.BookingActionRequest(idempotency_key=key or str(uuid.uuid4()), booking_id=booking_id, reason=reason, wait_seconds=wait_seconds)
        return self._at_owner(self._cluster.get_booking(booking_id).basecamp_id, call, request)

    def _basecamp_in(self, basecamp_id: str, region: str | None) -> str:
        """The basecamp whose node answers a regional read: the one asked about, else any of ``region``."""
        if basecamp_id:
            return basecamp_id
        if region is None:
            raise ValueError("a read without a basecamp needs the region it reads")
        camps = self._cluster.list_basecamps(region).basecamps
        if not camps:
            raise ValueError(f"region {region} serves no basecamp")
        return camps[0].basecamp_id

    def _at_owner(self, basecamp_id: str, call: Callable[[opb_grpc.OperatorServiceStub], Callable[..., Response]], request: object) -> Response:
        """Calls the basecamp's owner, following owner hints and backing off, within one deadline."""
        deadline = time.monotonic() + self._timeout_seconds
        attempt, hops = 0, 0
        while True:
            stub = opb_grpc.OperatorServiceStub(self._cluster.channel(self._cluster.owner_address(basecamp_id)))
            try:
                return call(stub)(request, timeout=max(deadline - time.monotonic(), 0.001))
            except grpc.RpcError as error:
                if error.code() not in _RETRYABLE:
                    raise
                if error.code() is not grpc.StatusCode.ABORTED and self._cluster.redirected(error, basecamp_id) and hops < _HOPS_MAX:
                    hops += 1
                    continue  # the refusal named the owner: go there now
                if error.code() is grpc.StatusCode.FAILED_PRECONDITION:
                    raise  # refused by the booking's state, not by ownership
                attempt += 1
                pause = self._retry.backoff_seconds(attempt)
                if attempt >= self._retry.attempts_max or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
