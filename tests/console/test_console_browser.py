"""The operator console in a real headless browser, against a real `ridgeline up` cluster:
log in, find a booking by id and read its timeline; the availability heat map; the door
(no page without a login, no post without its CSRF token)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import httpx
from browsing import desk_client, log_in, screenshot

from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.v1 import booking_pb2 as pb

STAY = date.today() + timedelta(days=30)


def test_log_in_find_a_booking_by_id_and_see_its_timeline(console_cluster: LocalCluster, page, tmp_path: Path) -> None:  # noqa: ANN001
    with desk_client(console_cluster) as desk:
        booked = desk.book("argentiere", "argentiere-dorm", STAY, STAY + timedelta(days=2), 2, "alice", wait=True)
        other = desk.place_hold("argentiere", "argentiere-dorm", STAY, STAY + timedelta(days=1), 1, "dave", hold_ttl_seconds=600)
    assert booked.state == pb.BOOKING_STATE_CONFIRMED, booked

    log_in(page, console_cluster, tmp_path, shot="login")
    page.goto(f"{console_cluster.console.url}/bookings?customer_id=alice&basecamp_id=argentiere")
    assert page.locator(f"a[href='/bookings/{booked.booking_id}']").count() == 1, "a search by customer finds the customer's booking"
    assert page.locator(f"a[href='/bookings/{other.booking_id}']").count() == 0, "and not another customer's"
    page.goto(f"{console_cluster.console.url}/bookings")
    page.fill("input[name=booking_id]", booked.booking_id)
    page.click("#search button[type=submit]")
    link = page.locator(f"a[href='/bookings/{booked.booking_id}']")
    link.wait_for()
    screenshot(page, tmp_path, "bookings")
    link.click()
    page.wait_for_url(f"**/bookings/{booked.booking_id}")
    assert page.inner_text("#booking-state") == "confirmed"
    timeline = page.inner_text("#timeline")
    assert "new → held" in timeline and "held → confirmed" in timeline, timeline
    assert "desk:desk" in timeline, f"the timeline names who placed the hold: {timeline}"
    assert "confirmed" in page.inner_text("#payment-state")
    screenshot(page, tmp_path, "booking-timeline")


def test_the_cluster_page_shows_regions_leases_and_the_coordinator_leader(console_cluster: LocalCluster, page, tmp_path: Path) -> None:  # noqa: ANN001
    log_in(page, console_cluster, tmp_path)
    page.goto(f"{console_cluster.console.url}/cluster")
    text = page.inner_text("main")
    for expected in ("eu-alps", "na-rockies", "eu-alps-1", "argentiere", "coordinator-1", "leader", "serving"):
        assert expected in text, f"{expected!r} missing from the cluster page: {text[:2000]}"
    screenshot(page, tmp_path, "cluster")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the cluster page fits a narrow screen"
    screenshot(page, tmp_path, "cluster-narrow")


def test_availability_is_a_heat_map_of_free_units(console_cluster: LocalCluster, page, tmp_path: Path) -> None:  # noqa: ANN001
    with desk_client(console_cluster) as desk:
        desk.place_hold("hoernli", "hoernli-guide", STAY, STAY + timedelta(days=1), 3, "bob", hold_ttl_seconds=600)
    log_in(page, console_cluster, tmp_path)
    page.goto(f"{console_cluster.console.url}/availability?basecamp_id=hoernli&start={STAY.isoformat()}&nights=7")
    cell = page.locator("table.heat tr", has_text="Matterhorn guide place").locator("td").first
    assert cell.get_attribute("title") == f"{STAY.isoformat()}: 1 of 4 free", cell.get_attribute("title")
    screenshot(page, tmp_path, "availability")


def test_no_page_without_a_login_and_no_post_without_its_csrf_token(console_cluster: LocalCluster, page, tmp_path: Path) -> None:  # noqa: ANN001
    url = console_cluster.console.url
    with httpx.Client(verify=False, follow_redirects=False, timeout=10) as anonymous:  # noqa: S501 - the local CA; only refusals are read
        for path in ("/cluster", "/bookings", "/bookings/some-id", "/availability", "/inflight"):
            answer = anonymous.get(url + path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), (path, answer.status_code)
        assert anonymous.post(url + "/logout", data={"csrf": "x"}).status_code == 401, "a post without a session is refused"
        assert anonymous.post(url + "/login", data={"token": console_cluster.console_token.read_text()}).status_code == 403, "a login post without its CSRF token"
    log_in(page, console_cluster, tmp_path)
    cookie = next(c for c in page.context.cookies() if c["name"] == "ridgeline_console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
    refused = page.context.request.post(f"{url}/logout", form={"next": "/"}, max_redirects=0)
    assert refused.status == 403, "a post with the session cookie but without its CSRF token is refused"
    forged = page.context.request.post(f"{url}/logout", form={"csrf": "forged"}, max_redirects=0)
    assert forged.status == 403, "a wrong CSRF token is refused"
    page.goto(f"{url}/cluster")
    assert page.url.endswith("/cluster"), "the refused posts did nothing: the session still stands"
    page.click("header form.logout button")
    page.wait_for_url(re.compile(r".*/login$"))
    page.goto(f"{url}/cluster")
    assert "/login" in page.url, "after logout, pages need a login again"
