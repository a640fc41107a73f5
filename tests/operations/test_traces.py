"""One booking, one trace; one trek, one trace: across the desk's call, the node, the settle
flow, the gateway and the confirm, and across the coordinator and every leg.

Every process exports over real OTLP to a collector in this test (tests/otlp_collector.py),
so a span only lands in the booking's trace if the trace context really crossed the gRPC
metadata, the settlement row and the gateway's HTTP headers. And with no endpoint set,
tracing installs nothing at all.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from certificates import SessionCerts
from drive import night
from gateway_process import gateway_process
from otlp_collector import Collector, exporting_to
from prometheus_client import REGISTRY
from trek_cluster import leg, plan_request, running_cluster

from ridgeline import tracing
from ridgeline.deploy.run.otlp_receiver import ReceivedSpan
from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.flows.payments import PaymentGateway
from ridgeline.flows.runtime import build_settlement_runtime, close_settlement_runtime
from ridgeline.flows.settle import settle_batch
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing.client import BookingClient
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import trek_pb2 as tpb

BOOK = "/ridgeline.v1.BookingService/Book"
GET = "/ridgeline.v1.BookingService/GetBooking"


def test_one_book_is_one_trace_through_node_flow_gateway_and_confirm(
    monkeypatch: pytest.MonkeyPatch, alps_db, prefect_api: str, region_servers: dict[str, PostgresServer], certs: SessionCerts, tmp_path: Path
) -> None:
    with exporting_to(monkeypatch, "ridgeline-tests") as collector, gateway_process(region_servers["sa-andes"], certs=certs.certs) as gateway:
        node = RegionalNode(NodeConfig(region="eu-alps", node_id="traced-node", database_url=alps_db.url, certs_dir=certs.dir))
        node.start()
        name = f"traced-{uuid.uuid4().hex[:8]}"
        build_settlement_runtime(name, alps_db.url, PaymentGateway(gateway.url, certs.node, timeout_seconds=5), tmp_path / "spool", borrowed_basecamps=["argentiere"])
        try:
            with BookingClient(node.address, transport=certs.desk, timeout_seconds=30) as desk:
                with tracing.span("desk books a stay"):
                    booked = desk.book("argentiere", "argentiere-dorm", night(60), night(62), 2, "traced-guest", hold_ttl_seconds=120)
                assert settle_batch(name, [booked.booking_id], ["argentiere"]) == {booked.booking_id: "confirmed"}
                shown = desk.get_booking(booked.booking_id)
        finally:
            close_settlement_runtime(name)
            node.stop(grace_seconds=1)
        assert shown.state == pb.BOOKING_STATE_CONFIRMED
        trace_id = shown.payment.trace_id
        assert len(trace_id) == 32, "GetBooking names the trace its Book started"
        spans = collector.wait_for(trace_id, {"desk books a stay", BOOK, "settle.pay", "settle.confirm", "gateway POST /v1/charges"})
    by_name = _by_name(spans)
    client_book, server_book = sorted(by_name[BOOK], key=lambda s: s.parent_id != by_name["desk books a stay"][0].span_id)
    assert client_book.parent_id == by_name["desk books a stay"][0].span_id, "the desk's client span is a child of its own span"
    assert server_book.parent_id == client_book.span_id, "the node continued the trace from the call's metadata"
    [pay], [confirm] = by_name["settle.pay"], by_name["settle.confirm"]
    assert pay.parent_id == confirm.parent_id == server_book.span_id, "settlement continued the Book's trace from the settlement row"
    assert pay.attributes["ridgeline.booking_id"] == booked.booking_id
    [charge] = by_name["gateway POST /v1/charges"]
    assert (charge.service, charge.parent_id) == ("ridgeline-gateway", pay.span_id), "the gateway continued it from the traceparent header"


def test_a_trek_is_one_trace_across_the_coordinator_and_every_leg(
    monkeypatch: pytest.MonkeyPatch, region_servers: dict[str, PostgresServer], fresh_database, certs: SessionCerts
) -> None:
    with exporting_to(monkeypatch, "ridgeline-tests") as collector, running_cluster(region_servers, fresh_database, certs) as cluster:
        cluster.start_coordinator()
        start = night(70)
        legs = [leg("argentiere", "argentiere-dorm", start), leg("abbot-pass", "abbot-bunk", start + timedelta(days=3))]
        channel, stub = cluster.stub()
        with channel, tracing.span("planner plans a trek"):
            trek = stub.PlanTrek(plan_request(f"traced-{uuid.uuid4().hex}", legs), timeout=60)
            root = _current_trace_id()
        assert trek.decision == tpb.DECISION_COMMIT, trek
        spans = collector.wait_for(
            root,
            {
                ("ridgeline-coordinator", "/ridgeline.v1.TrekService/PlanTrek"),
                ("ridgeline-tests", "/ridgeline.v1.TrekLegService/PrepareLeg"),
                ("ridgeline-tests", "/ridgeline.v1.TrekLegService/CommitLeg"),
            },
        )
    services = {(s.service, s.name) for s in spans}
    assert ("ridgeline-coordinator", "/ridgeline.v1.TrekService/PlanTrek") in services
    prepares = [s for s in spans if s.name == "/ridgeline.v1.TrekLegService/PrepareLeg" and s.service == "ridgeline-tests"]
    commits = [s for s in spans if s.name == "/ridgeline.v1.TrekLegService/CommitLeg" and s.service == "ridgeline-tests"]
    # Server spans of the in-process nodes (client spans are the coordinator's): one per leg and phase.
    assert len(prepares) == len(commits) == len(legs), sorted(services)


def test_server_spans_end_as_the_call_did_continue_sampled_callers_and_record_nothing_for_unsampled_ones(
    monkeypatch: pytest.MonkeyPatch, alps_db, certs: SessionCerts
) -> None:
    """The node's server spans (``server_spans``): a NOT_FOUND ends its span as an error
    with the gRPC code; a caller's garbled ``traceparent`` is not continued (nor fatal); a
    sampled caller's span is the parent; an unsampled caller's trace records no span."""
    sampled, unsampled = (f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-{flags}" for flags in ("01", "00"))
    with exporting_to(monkeypatch, "ridgeline-tests") as collector:
        node = RegionalNode(NodeConfig(region="eu-alps", node_id="traced-refusals", database_url=alps_db.url, certs_dir=certs.dir))
        node.start()
        try:
            # An untraced caller's channel: only the node's server spans land in the collector.
            with grpc.secure_channel(node.address, certs.desk.channel_credentials()) as channel:
                get = channel.unary_unary(GET, request_serializer=pb.GetBookingRequest.SerializeToString, response_deserializer=pb.Booking.FromString)
                for traceparent in ("00-" + "z" * 32 + "-b7ad6b7169203331-01", unsampled, sampled):
                    with pytest.raises(grpc.RpcError) as refused:
                        get(pb.GetBookingRequest(booking_id=str(uuid.uuid4())), metadata=(("traceparent", traceparent),), timeout=10)
                    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            spans = _wait_for_span(collector, GET, count=2)
        finally:
            node.stop(grace_seconds=1)
    garbled_span, continued = spans
    assert garbled_span.parent_id == "" and garbled_span.trace_id != "z" * 32, "a garbled traceparent starts a new trace"
    assert (continued.trace_id, continued.parent_id) == tuple(sampled.split("-")[1:3]), "a sampled caller's span is the parent"
    assert continued.span_id not in ("", continued.parent_id)
    for span in spans:
        assert span.attributes["rpc.method"] == "GetBooking" and span.attributes["rpc.service"] == "ridgeline.v1.BookingService"
        assert span.status_code == "STATUS_CODE_ERROR" and span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert unsampled.split("-")[1] not in {s.trace_id for s in collector.spans()}, "an unsampled trace records no span"


def test_the_exporter_is_chosen_by_otel_traces_exporter_and_an_unknown_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.ENDPOINT_VARIABLE, raising=False)
    monkeypatch.setenv(tracing.EXPORTER_VARIABLE, "otlp")
    assert not tracing.configure("ridgeline-tests"), "OTLP without an endpoint stays off"
    monkeypatch.setenv(tracing.EXPORTER_VARIABLE, "jaeger-thrift")
    with pytest.raises(ValueError, match="otlp .* console or none"):
        tracing.configure("ridgeline-tests")
    monkeypatch.setenv(tracing.EXPORTER_VARIABLE, "none")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    before = _spans_exported()
    try:
        assert tracing.configure("ridgeline-tests") and tracing.server_interceptors(), "none: spans made (and dropped)"
        for _ in range(3):
            with tracing.span("dropped"):
                assert tracing.current_traceparent(), "a recording span is current"
    finally:
        tracing.disable()  # flushes the batch
    assert _spans_exported() - before == 3, "each span reached the exporter and was counted"


def test_without_an_endpoint_tracing_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.ENDPOINT_VARIABLE, raising=False)
    assert not tracing.configure("ridgeline-tests") and not tracing.enabled()
    assert tracing.server_interceptors() == []
    channel = grpc.insecure_channel("127.0.0.1:1")
    assert tracing.traced_channel(channel) is channel, "no interceptor wraps an untraced channel"
    with tracing.span("nothing"):
        assert tracing.current_traceparent() == ""
    with Transport.insecure().http_client("http://127.0.0.1:1", timeout_seconds=1) as client:
        assert not client.event_hooks["request"], "no hook adds headers to an untraced request"


def _spans_exported() -> float:
    return REGISTRY.get_sample_value("ridgeline_trace_spans_exported_total") or 0.0


def _wait_for_span(collector: Collector, name: str, timeout_seconds: float = 20.0, *, count: int = 1) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout_seconds
    while len(found := [s for s in collector.spans() if s.name == name and s.service == "ridgeline-tests"]) < count:
        assert time.monotonic() < deadline, f"{count} {name} span(s) expected within {timeout_seconds} s, got {found}"
        time.sleep(0.1)
    return found


def _by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    grouped: dict[str, list[ReceivedSpan]] = {}
    for s in spans:
        grouped.setdefault(s.name, []).append(s)
    return grouped


def _current_trace_id() -> str:
    from opentelemetry import trace

    return format(trace.get_current_span().get_span_context().trace_id, "032x")

