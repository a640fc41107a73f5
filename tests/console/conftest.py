"""A throwaway `ridgeline up` cluster with its operator console, and a real headless browser.

The browser is Debian's chromium (``/usr/bin/chromium``) driven by Playwright; nothing is
downloaded. It trusts nothing but is told to accept the cluster's self-made CA for this
one context (``ignore_https_errors``): the console is HTTPS, and its cookies are Secure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ridgeline.deploy.cluster.cluster_file import ClusterSpec, NodeSpec, RegionSpec, with_free_ports
from ridgeline.deploy.cluster.local_cluster import LocalCluster

CHROMIUM = Path("/usr/bin/chromium")
#: Settlement passes before a payment that stays unknown releases its hold (the nodes' default: 3).
CHARGE_PASSES = 1000
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def console_cluster() -> Iterator[LocalCluster]:
    """Two regions of one node each, the payment gateway, Prefect, a trek coordinator and the console."""
    spec = ClusterSpec(
        name="console",
        coordinator_listen="127.0.0.1:0",
        coordinator_id="coordinator-1",
        regions=(
            RegionSpec("eu-alps", (NodeSpec("eu-alps-1", "eu-alps", "127.0.0.1:0"),)),
            RegionSpec("na-rockies", (NodeSpec("na-rockies-1", "na-rockies", "127.0.0.1:0"),)),
        ),
    )
    root = Path(tempfile.mkdtemp(prefix="ridgeline-test-console-"))
    cluster = LocalCluster(with_free_ports(spec, lease_ttl_seconds=2.0, heartbeat_interval_seconds=0.5), root)
    session_prefect = os.environ.pop("PREFECT_API_URL", None)  # its own Prefect, as `ridgeline up` runs
    # Nodes keep a booking's payment open through a gateway outage instead of releasing the
    # hold after 3 passes: the in-flight test needs a booking stuck long enough to act on.
    os.environ["RIDGELINE_CHARGE_PASSES"] = str(CHARGE_PASSES)
    try:
        cluster.start()
    finally:
        del os.environ["RIDGELINE_CHARGE_PASSES"]
        if session_prefect is not None:
            os.environ["PREFECT_API_URL"] = session_prefect
    assert cluster.console is not None and cluster.console.url.startswith("https://"), "up serves the console over HTTPS"
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"the console's browser tests need Debian's chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, tmp_path: Path) -> Iterator[object]:  # noqa: ANN001 - a playwright Browser
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()
