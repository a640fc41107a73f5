"""The alert rules against a real Prometheus scraping a real node: each condition caused for
real turns its alert on (pending: its expression is true), and only its alert.

Prometheus (Debian's ``prometheus`` package) scrapes the node every second and evaluates
the rule files of deploy/monitoring, with their group intervals shortened to a second so
that the test takes seconds, not minutes; the expressions, labels and thresholds are the
files' own. The causes: a lapsed hold the sweeper never reaches (invariant 3 slipping),
a payment gateway that is down until the settlement adapter's breaker opens, and the node
itself stopping.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from drive import night, place_lapsed_hold
from gateway_process import Gateway

from ridgeline.deploy.run.processes import free_port
from ridgeline.flows.circuit_breaker import CircuitBreaker
from ridgeline.flows.payments import PaymentGateway, PaymentUnavailable
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.regional.storage.db import make_engine

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
#: The breaker's target label: this test's own, so no other breaker of the session moves it.
TARGET = "live-alert-gateway"


@pytest.fixture
def node(alps_db, certs) -> Iterator[RegionalNode]:
    """A node that never sweeps (a lapsed hold stays held) and samples its vitals twice a second."""
    config = NodeConfig(region="eu-alps", node_id="alerting-node", database_url=alps_db.url, certs_dir=certs.dir, sweep_interval_seconds=3600, vitals_interval_seconds=0.5)
    started = RegionalNode(config)
    started.start()
    yield started
    started.stop(grace_seconds=1)


@pytest.fixture
def prometheus(node: RegionalNode, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: install Debian's `prometheus` package (apt-get install prometheus); .ci/run does")
    rule_files = []
    for name in ("ridgeline-recording.yml", "ridgeline-alerts.yml"):
        rules = yaml.safe_load((MONITORING / name).read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
        (tmp_path / name).write_text(yaml.safe_dump(rules))
        rule_files.append(name)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "scrape_configs": [{"job_name": "ridgeline-node", "static_configs": [{"targets": [node.metrics_address], "labels": {"region": "eu-alps"}}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, "--config.file", str(tmp_path / "prometheus.yml"), "--storage.tsdb.path", str(tmp_path / "data"), "--web.listen-address", url.removeprefix("http://")],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, "prometheus to be ready", tmp_path / "prometheus.log")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def test_each_caused_condition_turns_on_its_alert_and_no_other(node: RegionalNode, prometheus: str, alps_db, payment_gateway: Gateway, tmp_path: Path) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=3600, target=TARGET)
    _wait(lambda: _scraped(prometheus, f'ridgeline_circuit_breaker_state{{target="{TARGET}"}}') == 0.0, "the closed breaker to be scraped")
    _wait(lambda: _scraped(prometheus, "ridgeline_holds_lapsed_unswept") == 0.0, "the vitals to be scraped")
    assert _active(prometheus) == set(), "a healthy node raises no alert"

    engine = make_engine(alps_db.url, pool_size=1)
    try:
        # Lapsed three hours ago: past the vitals' grace of two sweep intervals (two hours here).
        place_lapsed_hold(engine, "argentiere", "argentiere-dorm", night(80), night(81), 1, lapsed_seconds=3 * 3600)
    finally:
        engine.dispose()
    _wait(lambda: "RidgelineHoldsNotExpiring" in _active(prometheus), "the lapsed hold to raise RidgelineHoldsNotExpiring")

    payment_gateway.faults(outage=True)
    try:
        with PaymentGateway(payment_gateway.url, payment_gateway.transport(), timeout_seconds=1, attempts_max=1, breaker=breaker) as adapter:
            for attempt in range(2):
                with pytest.raises(PaymentUnavailable):
                    adapter.charge(f"live-alert-{attempt}", 100, "EUR", reference=f"live-alert-{attempt}")
    finally:
        payment_gateway.faults()
    _wait(lambda: "RidgelineCircuitBreakerOpen" in _active(prometheus), "the open breaker to raise RidgelineCircuitBreakerOpen")
    assert _active(prometheus) == {"RidgelineHoldsNotExpiring", "RidgelineCircuitBreakerOpen"}, "nothing else is wrong"

    node.stop(grace_seconds=1)
    _wait(lambda: {"RidgelineNodeDown", "RidgelineRegionDown"} <= _active(prometheus), "the stopped node to raise RidgelineNodeDown and RidgelineRegionDown")


def _active(prometheus: str) -> set[str]:
    """Alerts whose expression is true now (pending while their ``for`` runs, then firing)."""
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).raise_for_status().json()["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] in ("pending", "firing")}


def _scraped(prometheus: str, query: str) -> float | None:
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).raise_for_status().json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _wait(ready: object, what: str, log: Path | None = None, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            if ready():  # type: ignore[operator]
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {timeout_seconds:.0f} s waiting for {what}\n{tail}")
