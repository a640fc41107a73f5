"""A desk in the console: it logs in with a desk token scoped to one basecamp and sees, in a
real headless browser, only that basecamp's bookings and in-flight work, because every call
the console makes for it carries its token and the servers apply its scope (not the
console). A booking of another basecamp is not found, as the servers answer it; treks,
which span regions, stay with the SREs; a planner's or an agency's token does not open
the console at all."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import httpx
from browsing import desk_client, log_in, screenshot

from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.trust import tokens
from ridgeline.trust.identity import Role

STAY = date.today() + timedelta(days=50)
SCOPED_DESK = "hoernli-desk"
#: The in-flight page's threshold here: both holds are older by the time it is asked.
IN_FLIGHT_AFTER_SECONDS = 1


def _token(cluster: LocalCluster, role: Role, principal: str, scope: list[str]) -> str:
    return tokens.issue(cluster.certs.ca_key.read_bytes(), role, principal, ttl_seconds=600, scope=scope)


def test_a_desk_scoped_to_one_basecamp_sees_only_its_bookings_and_in_flight_work(console_cluster: LocalCluster, page, tmp_path: Path) -> None:  # noqa: ANN001
    with desk_client(console_cluster) as desk:
        ours = desk.place_hold("hoernli", "hoernli-dorm", STAY, STAY + timedelta(days=1), 1, "erin", hold_ttl_seconds=600)
        theirs = desk.place_hold("argentiere", "argentiere-dorm", STAY, STAY + timedelta(days=1), 1, "erin", hold_ttl_seconds=600)
    held_at = time.monotonic()
    url = console_cluster.console.url
    log_in(page, console_cluster, tmp_path, token=_token(console_cluster, Role.DESK, SCOPED_DESK, ["hoernli"]))
    assert page.inner_text("header .who") == f"desk:{SCOPED_DESK}"

    page.goto(f"{url}/bookings?customer_id=erin&region=eu-alps")
    assert page.locator(f"a[href='/bookings/{ours.booking_id}']").count() == 1, "the desk finds its basecamp's booking"
    assert page.locator(f"a[href='/bookings/{theirs.booking_id}']").count() == 0, "and not another basecamp's, though the customer is the same"
    screenshot(page, tmp_path, "desk-bookings")

    hidden = page.goto(f"{url}/bookings/{theirs.booking_id}")
    assert hidden is not None and hidden.status == 404, hidden and hidden.status
    assert "NOT_FOUND" in page.inner_text("main"), f"a booking out of the desk's reach is not shown, nor said to exist: {page.inner_text('main')}"
    page.goto(f"{url}/bookings/{ours.booking_id}")
    assert page.inner_text("#booking-state") == "held"

    time.sleep(max(0.0, held_at + IN_FLIGHT_AFTER_SECONDS + 0.2 - time.monotonic()))
    page.goto(f"{url}/inflight?region=eu-alps&older_than={IN_FLIGHT_AFTER_SECONDS}")
    page.locator(f"tr[data-booking='{ours.booking_id}']").wait_for()
    assert page.locator(f"tr[data-booking='{theirs.booking_id}']").count() == 0, "in flight lists only the desk's basecamps"
    assert page.locator("#treks-sre-only").count() == 1 and page.locator("p.error").count() == 0, page.inner_text("main")


def test_only_sres_and_desks_may_log_in(console_cluster: LocalCluster) -> None:
    url = console_cluster.console.url
    with httpx.Client(verify=False, timeout=10) as browserless:  # noqa: S501 - the local CA; only the login's answers are read
        for role in (Role.PLANNER, Role.AGENCY):
            form = browserless.get(f"{url}/login")
            csrf = form.cookies["ridgeline_console_login"]
            answer = browserless.post(f"{url}/login", data={"csrf": csrf, "token": _token(console_cluster, role, "someone", [])}, follow_redirects=False)
            assert answer.status_code == 401 and "may not use the console" in answer.text, (role, answer.status_code)
