"""What the console's browser tests do again and again: log in, take a screenshot, book as a desk."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.routing import ClusterClient

#: Where the README's tour finds the screenshots the tests take.
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


def log_in(page, cluster: LocalCluster, tmp_path: Path, *, shot: str | None = None, token: str | None = None) -> None:  # noqa: ANN001 - a playwright Page
    """Logs in with ``token``, or the local sre's token that ``up`` wrote."""
    assert cluster.console is not None and cluster.console_token is not None
    page.goto(f"{cluster.console.url}/bookings")
    assert "/login" in page.url, f"a page without a login redirects to the login form, not {page.url}"
    page.fill("#token", token or cluster.console_token.read_text().strip())
    if shot:
        screenshot(page, tmp_path, shot)
    page.click("#login button[type=submit]")
    page.wait_for_url(re.compile(r".*/bookings$"))


def desk_client(cluster: LocalCluster) -> ClusterClient:
    return ClusterClient([run.address for run in cluster.nodes.values()], transport=cluster.client_transport("desk"), timeout_seconds=20)


def screenshot(page, tmp_path: Path, name: str) -> Path:  # noqa: ANN001 - a playwright Page
    """A full-page screenshot kept with the test's artifacts and copied for the README's tour."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")
    return path
