"""The leading coordinator SIGKILLed, or SIGSTOPped past its lease, in the middle of a storm of treks.

Two real coordinator processes over one decision log, real nodes and the gateway, mutual
TLS. A follower must lead within the lease TTL plus one heartbeat (plus slack for this
shared machine), every trek must end all or nothing in the participants' own tables
(invariant 5) with the gateway keeping exactly the price of the confirmed legs
(invariant 4), and the log must hold no decision written under a stale epoch (checked in
SQL, leadership.STALE_DECISIONS_SQL). In the SIGSTOP case the old leader resumes
believing it leads (its lease belief runs on a clock that stood still while it was
stopped, as a suspended VM's can), so only the database's fence keeps its writes out.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from certificates import SessionCerts
from ha_cluster import HEARTBEAT_SECONDS, LEASE_TTL_SECONDS, Coordinators, TrekStorm, decisions_by_epoch, peer_target, stale_decisions, two_coordinators, wait_all_final
from trek_cluster import TrekCluster, running_cluster

from ridgeline.deploy.cluster.scrape import scrape_coordinator
from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.global_coordinator.leadership import FROZEN_CLOCK_ENV

#: Bound by wall-clock time (recovery, expiry, grace): run alone, after the parallel phase (Makefile).
pytestmark = pytest.mark.serial


#: A loaded 2-core machine delays the follower's heartbeat and the old leader's connections' end.
SLACK_SECONDS = 1.5


@pytest.fixture
def peer() -> dict[str, str]:
    return peer_target()


@pytest.fixture
def cluster(region_servers: dict[str, PostgresServer], fresh_database, certs: SessionCerts, peer: dict[str, str]) -> Iterator[TrekCluster]:
    with running_cluster(region_servers, fresh_database, certs, more_coordinators=tuple(peer.values())) as trek_cluster:
        yield trek_cluster


def _assert_the_aftermath(cluster: TrekCluster, coordinators: Coordinators, storm: TrekStorm) -> None:
    assert not storm.unanswered, f"PlanTreks no coordinator answered within 30 s: {storm.unanswered[:3]}"
    treks = wait_all_final(coordinators, storm.keys)
    for trek in treks:
        cluster.assert_atomic_and_paid(trek)
    cluster.assert_inventories()
    assert stale_decisions(coordinators) == [], "a decision was written under an epoch that no longer led"


def test_sigkill_of_the_leader_mid_storm_a_follower_leads_within_the_lease_and_every_trek_is_all_or_nothing(cluster: TrekCluster, peer) -> None:
    with two_coordinators(cluster, peer) as coordinators:
        with TrekStorm(coordinators) as storm:
            storm.first_decision_after(time.monotonic(), timeout_seconds=20)
            time.sleep(1.5)  # treks in every phase when the leader dies
            os.kill(coordinators.processes["coordinator-a"].pid, signal.SIGKILL)
            killed = time.monotonic()
            holder, epoch, took = coordinators.wait_leader(1, timeout_seconds=LEASE_TTL_SECONDS * 5)
            assert holder == "coordinator-b" and epoch == 2
            assert took <= LEASE_TTL_SECONDS + HEARTBEAT_SECONDS + SLACK_SECONDS, f"the follower took {took:.2f} s to lead"
            recovered = storm.first_decision_after(killed, timeout_seconds=20)
            time.sleep(1.0)  # the new leader under the storm for a while
        print(f"\nfollower led {took:.2f} s after the SIGKILL; first trek decided {recovered:.2f} s after it; {len(storm.keys)} treks")
        _assert_the_aftermath(cluster, coordinators, storm)
        by_epoch = decisions_by_epoch(coordinators)
        assert by_epoch.get(1) and by_epoch.get(2), f"both leaders decided treks: {by_epoch}"


def test_a_leader_stopped_past_its_lease_resumes_believing_it_leads_and_only_the_current_epochs_writes_land(cluster: TrekCluster, peer) -> None:
    with two_coordinators(cluster, peer, env={FROZEN_CLOCK_ENV: "1"}) as coordinators:
        with TrekStorm(coordinators) as storm:
            storm.first_decision_after(time.monotonic(), timeout_seconds=20)
            time.sleep(1.5)
            old = coordinators.processes["coordinator-a"]
            os.kill(old.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                holder, epoch, took = coordinators.wait_leader(1, timeout_seconds=LEASE_TTL_SECONDS * 5)
                assert holder == "coordinator-b" and epoch == 2
                # Half a lease more: the server ends the stopped process's open transaction first.
                assert took <= LEASE_TTL_SECONDS * 1.5 + HEARTBEAT_SECONDS + SLACK_SECONDS, f"the follower took {took:.2f} s to lead"
                storm.first_decision_after(stopped, timeout_seconds=20)
                time.sleep(max(0.0, LEASE_TTL_SECONDS * 2 - (time.monotonic() - stopped)))  # well past the old lease
            finally:
                os.kill(old.pid, signal.SIGCONT)
            time.sleep(2.0)  # the old leader's drives and its lease round meet the log
            assert coordinators.leader() == ("coordinator-b", 2), "the resumed leader took nothing back"
        resumed = scrape_coordinator(coordinators.metrics["coordinator-a"])
        assert resumed is not None and resumed.leader_epoch == 0, "the resumed leader found out it follows"
        print(f"\nfollower led {took:.2f} s after the SIGSTOP; the resumed leader's refused writes: {coordinators.refused_writes('coordinator-a')}")
        _assert_the_aftermath(cluster, coordinators, storm)
        by_epoch = decisions_by_epoch(coordinators)
        assert set(by_epoch) <= {1, 2} and by_epoch.get(2), f"decisions by epoch: {by_epoch}"
