"""Prometheus metrics of a regional node (names ``ridgeline_*``, base units, ARCHITECTURE.md §6).

Metrics live in the process-wide default registry and are served over HTTP by the node
(``NodeConfig.metrics_listen_address``). Labels never carry booking ids or customers:
only bounded sets (method, status code, SQLSTATE).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

#: Latency buckets from a fast read to a deadline-long call, seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RPC_SECONDS = Histogram(
    "ridgeline_rpc_duration_seconds",
    "Time to answer a gRPC call, by method and status code (PlaceHold is the hold latency, ConfirmBooking the confirm latency).",
    ["method", "code"],
    buckets=_LATENCY_BUCKETS,
)
DB_RETRIES = Counter(
    "ridgeline_db_retries_total",
    "Transactions re-run whole, by the SQLSTATE that caused it (40001 serialization, 40P01 deadlock, reconnect).",
    ["sqlstate"],
)
AMBIGUOUS_COMMITS = Counter(
    "ridgeline_db_ambiguous_commits_total",
    "COMMITs whose connection was lost in flight (outcome unknown), by the operation attempted.",
    ["operation"],
)
AMBIGUOUS_RESOLUTIONS = Counter(
    "ridgeline_db_ambiguous_resolutions_total",
    "Unknown commit outcomes resolved, by operation and resolution (routing.retry.Resolution:"
    " committed, not_committed, rerun, unresolved); one per ambiguous commit, and per hold of"
    " a group-commit round.",
    ["operation", "resolution"],
)
SWEEP_PASSES = Counter(
    "ridgeline_sweep_passes_total",
    "Hold sweep passes, by how they ended: complete (no lapsed hold left), or deadline (one"
    " interval spent and some still left, retried at once by the next pass).",
    ["outcome"],
)
SWEEP_BATCH_FAILURES = Counter(
    "ridgeline_sweep_batch_failures_total",
    "Sweep batches that failed and were retried within the pass, by SQLSTATE or error kind.",
    ["reason"],
)
HOLDS_SWEPT = Counter("ridgeline_holds_swept_total", "Lapsed holds the sweeper turned into expired bookings.")
HOLD_ROUND_SIZE = Histogram(
    "ridgeline_hold_round_size", "Holds placed together by one group-commit statement.", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Times every unary call and records the status code it ended with."""

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        behaviour = handler.unary_unary

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return behaviour(request, context)
            except BaseException:
                status = context.code()
                code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                RPC_SECONDS.labels(method, code).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
