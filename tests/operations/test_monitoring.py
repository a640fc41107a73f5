"""The alert and recording rules, the Grafana dashboard and the vitals they read.

promtool (Debian's ``prometheus`` package) checks the rule files and runs their unit
tests (``deploy/monitoring/tests``): each alert fires on the series that should page
someone and not on its healthy neighbour. Every metric a rule or a panel names must be
one a Ridgeline process exposes, so a renamed metric cannot silently blind an alert.
The vitals gauges are sampled from a real region database.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from drive import night, place_lapsed_hold
from prometheus_client import REGISTRY, Metric
from prometheus_client.parser import text_string_to_metric_families

from ridgeline.deploy.drills.audit import AuditReport, write_textfile
from ridgeline.deploy.payment_gateway.metrics import GatewayMetrics
from ridgeline.regional import vitals
from ridgeline.regional.storage.audit_sql import Check
from ridgeline.regional.storage.db import make_engine
from ridgeline.routing.client import BookingClient

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULE_FILES = ("ridgeline-recording.yml", "ridgeline-alerts.yml")
#: Metric names inside an expression, once quoted label values are taken out.
_NAME = re.compile(r"(?<![\w:])((?:ridgeline|region)[_:][A-Za-z0-9_:]*|up)(?![\w:(])")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's `prometheus` package (apt-get install prometheus); .ci/run does")
    return subprocess.run([promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rule_files_and_the_example_configuration() -> None:
    checked = _promtool("check", "rules", *RULE_FILES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = _promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_fires_on_its_case_and_stays_quiet_beside_it() -> None:
    tested = _promtool("test", "rules", "tests/ridgeline-alerts.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    cases = yaml.safe_load((MONITORING / "tests" / "ridgeline-alerts.test.yml").read_text())
    tested_alerts = {case["alertname"] for test in cases["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested_alerts == set(_alerts()), f"alerts without a firing case: {sorted(set(_alerts()) - tested_alerts)}"


def test_every_metric_the_rules_and_the_dashboard_name_is_exposed(tmp_path: Path) -> None:
    known = _exposed_names(tmp_path) | {rule["record"] for group in _groups("ridgeline-recording.yml") for rule in group["rules"]}
    for where, expression in [*_rule_expressions(), *_panel_expressions()]:
        named = set(_NAME.findall(re.sub(r'"[^"]*"', '""', expression)))
        assert named, f"{where}: names no metric: {expression}"
        assert named <= known, f"{where} names {sorted(named - known)}, which no Ridgeline process exposes"


def test_the_dashboard_is_valid_grafana_json_with_a_query_on_every_panel() -> None:
    dashboard = json.loads((MONITORING / "ridgeline-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "region"}


def test_vitals_see_a_lapsed_hold_left_behind_and_a_settlement_waiting(alps_db, alps_client: BookingClient) -> None:
    engine = make_engine(alps_db.url, pool_size=1)
    try:
        sampler = vitals.Vitals(engine, lambda: datetime.now(timezone.utc), interval_seconds=60, sweep_grace_seconds=10)
        sampler.sample()
        assert (_gauge(vitals.HOLDS_LAPSED_UNSWEPT), _gauge(vitals.SETTLEMENT_OLDEST_DUE)) == (0, 0), "a fresh region has nothing waiting"
        place_lapsed_hold(engine, "argentiere", "argentiere-dorm", night(40), night(41), 1, lapsed_seconds=60)
        place_lapsed_hold(engine, "argentiere", "argentiere-dorm", night(42), night(43), 1, lapsed_seconds=2)  # within the grace
        alps_client.book("argentiere", "argentiere-guide", night(44), night(45), 1, "vital-signs")  # no settlement runs here
        later = datetime.now(timezone.utc) + timedelta(minutes=20)
        vitals.Vitals(engine, lambda: later, interval_seconds=60, sweep_grace_seconds=10).sample()
        # 20 minutes on, the second hold has lapsed too, and so has the hold of the booking whose
        # settlement has waited all that time (its TTL is shorter).
        assert _gauge(vitals.HOLDS_LAPSED_UNSWEPT) == 3
        assert 20 * 60 - 30 <= _gauge(vitals.SETTLEMENT_OLDEST_DUE) <= 20 * 60 + 30
        sampler.sample()
        assert _gauge(vitals.HOLDS_LAPSED_UNSWEPT) == 1, "now: only the hold that lapsed a minute ago is past the grace"
        assert _gauge(vitals.LEGS_PAST_DEADLINE) == 0
    finally:
        engine.dispose()


def test_the_audit_textfile_carries_the_verdict_and_offenders_per_invariant(tmp_path: Path) -> None:
    path = tmp_path / "ridgeline_audit.prom"
    report = AuditReport([Check("1 no overbooking", "capacity", "eu-alps"), Check("3 holds end", "lapsed holds", "eu-alps", ["b1", "b2"], 2)])
    write_textfile(report, path)
    samples = [s for family in text_string_to_metric_families(path.read_text()) for s in family.samples]
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    assert value[("ridgeline_audit_passed", ())] == 0
    assert value[("ridgeline_audit_offenders", (("invariant", "3 holds end"),))] == 2
    assert value[("ridgeline_audit_offenders", (("invariant", "1 no overbooking"),))] == 0
    assert abs(value[("ridgeline_audit_last_run_timestamp_seconds", ())] - datetime.now(timezone.utc).timestamp()) < 60


def _gauge(gauge: object) -> float:
    return REGISTRY.get_sample_value(gauge._name) or 0.0  # type: ignore[attr-defined]


def _groups(name: str) -> list[dict]:
    return yaml.safe_load((MONITORING / name).read_text())["groups"]


def _alerts() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for group in _groups("ridgeline-alerts.yml") for rule in group["rules"]}


def _rule_expressions() -> list[tuple[str, str]]:
    return [(f"{name} {rule.get('alert') or rule['record']}", str(rule["expr"])) for name in RULE_FILES for group in _groups(name) for rule in group["rules"]]


def _panel_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "ridgeline-dashboard.json").read_text())
    return [(f"panel {p['title']!r}", t["expr"]) for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]


def _exposed_names(scratch: Path) -> set[str]:
    """What node, coordinator, gateway and audit processes expose, by the sample names a
    scrape sees (a counter's ``_total``, a histogram's ``_bucket``/``_count``/``_sum``),
    whether or not a labelled child exists yet; plus Prometheus's own ``up``."""
    import ridgeline.flows.circuit_breaker  # noqa: F401 - each import registers its metrics
    import ridgeline.flows.loop  # noqa: F401
    import ridgeline.global_coordinator.protocol  # noqa: F401
    import ridgeline.regional.metrics  # noqa: F401
    import ridgeline.routing.keeper  # noqa: F401
    import ridgeline.trust.server_auth  # noqa: F401

    audit = scratch / "audit.prom"
    write_textfile(AuditReport([Check("1 no overbooking", "capacity", "eu-alps")]), audit)
    families: list[Metric] = [*REGISTRY.collect(), *GatewayMetrics().registry.collect(), *text_string_to_metric_families(audit.read_text())]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "summary": ("_count", "_sum", "")}
    return {"up"} | {f"{f.name}{suffix}" for f in families for suffix in suffixes.get(f.type, ("",))}
