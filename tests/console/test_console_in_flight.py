"""A booking stuck behind a payment gateway outage, seen in the console's in-flight page and
bulk-retried from it once the gateway is back: the page shows each booking's real outcome,
as the node re-read it after the retry, and the booking's timeline records the retry."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

from browsing import desk_client, log_in, screenshot

from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.v1 import booking_pb2 as pb

STAY = date.today() + timedelta(days=40)
#: Failed attempts after which settlement waits its longest (10 s) before trying again by
#: itself: the bulk retry then comes first (and each retry that fails pushes the next 10 s out).
ATTEMPTS_BEFORE_LONG_WAIT = 6
RETRIES_MAX = 4


def _gateway_faults(cluster: LocalCluster, **faults: object) -> None:
    with cluster.client_transport("sre").http_client(cluster.spec.gateway_url, timeout_seconds=10) as http:
        http.put("/admin/faults", json=faults).raise_for_status()


def _until(predicate, timeout_seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_a_booking_stuck_on_the_gateway_is_in_flight_and_a_bulk_retry_shows_its_real_outcome(console_cluster: LocalCluster, page, tmp_path: Path) -> None:  # noqa: ANN001
    _gateway_faults(console_cluster, outage=True)
    try:
        with desk_client(console_cluster) as desk:
            stuck = desk.book("gouter", "gouter-dorm", STAY, STAY + timedelta(days=1), 1, "carol", hold_ttl_seconds=900)
            _until(lambda: desk.get_booking(stuck.booking_id).payment.attempts >= ATTEMPTS_BEFORE_LONG_WAIT, 90, "settlement to fail against the outage")
            assert desk.get_booking(stuck.booking_id).state == pb.BOOKING_STATE_HELD, "the hold waits while the gateway is down"
        log_in(page, console_cluster, tmp_path)
        page.goto(f"{console_cluster.console.url}/inflight?region=eu-alps&basecamp_id=gouter&older_than=5")
        row = page.locator(f"tr[data-booking='{stuck.booking_id}']")
        row.wait_for()
        assert "awaiting_payment" in row.inner_text() and "held" in row.inner_text(), row.inner_text()
        screenshot(page, tmp_path, "in-flight")
    finally:
        _gateway_faults(console_cluster)

    outcome_text = ""
    for _ in range(RETRIES_MAX):  # the breaker may still be open for the first retry: its outcome says so, truthfully
        page.click("#bulk button[type=submit]")
        page.locator("#outcomes").wait_for(timeout=60_000)
        outcome = page.locator(f"#outcomes tr[data-booking='{stuck.booking_id}']")
        outcome.wait_for()
        outcome_text = outcome.inner_text()
        if "applied" in outcome.locator(".result").inner_text():
            break
        assert "still pending" in outcome_text and "held" in outcome_text, f"an outcome that is not applied says why: {outcome_text}"
        time.sleep(3)
    assert "applied" in outcome_text and "confirmed" in outcome_text, f"the retry's outcome is the booking as re-read: {outcome_text}"
    screenshot(page, tmp_path, "in-flight-retried")

    with desk_client(console_cluster) as desk:
        assert desk.get_booking(stuck.booking_id).state == pb.BOOKING_STATE_CONFIRMED, "the page showed what the cluster holds"
    page.goto(f"{console_cluster.console.url}/bookings/{stuck.booking_id}")
    timeline = page.inner_text("#timeline")
    assert "held → confirmed" in timeline and "sre:sre" in timeline, f"the timeline shows the retry and who made it: {timeline}"
