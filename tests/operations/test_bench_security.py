"""Benchmarks run secure by default and price mTLS fairly (deploy/bench/security.py, holds_bench).

No servers here: the engines' own runs are `ridgeline bench …` (BENCHMARKS.md); these
pin what makes their figures mean what they say.
"""

from __future__ import annotations

from pathlib import Path

from ridgeline.deploy.bench import holds_bench
from ridgeline.deploy.bench.holds_bench import CEILING, GRPC, PLAINTEXT, TRACED, PhaseResult
from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.trust.certs import identity_of
from ridgeline.trust.identity import Role


def test_each_bench_thread_is_a_desk_of_its_own(tmp_path: Path) -> None:
    """One principal for every thread would measure the fair-share limit, not the node."""
    security = BenchSecurity.made_in(tmp_path)
    desks = security.desks(3)
    assert security.certs is not None
    identities = [identity_of(security.certs.client_cert(d.principal).read_bytes()) for d in desks if d.principal]
    assert [i.role for i in identities] == [Role.DESK] * 3
    assert len({i.principal for i in identities}) == 3


def test_bench_children_get_their_security_before_the_subcommand(tmp_path: Path) -> None:
    secure = BenchSecurity.made_in(tmp_path).command("node", "--region", "bench")
    assert secure.index("--certs-dir") < secure.index("node") and secure[secure.index("--certs-dir") + 1] == str(tmp_path / "certs")
    plaintext = BenchSecurity.plaintext().command("node", "--region", "bench")
    assert plaintext.index("--insecure") < plaintext.index("node") and "--certs-dir" not in plaintext


def test_baselines_alternate_which_phase_runs_first() -> None:
    """Neither transport, traced or not, always gets the warmer database: the order flips each round."""
    assert holds_bench._schedule(2, extras=[PLAINTEXT]) == [CEILING, GRPC, PLAINTEXT, CEILING, PLAINTEXT, GRPC, CEILING]
    assert holds_bench._schedule(2, extras=[PLAINTEXT, TRACED]) == [CEILING, GRPC, PLAINTEXT, TRACED, CEILING, TRACED, PLAINTEXT, GRPC, CEILING]
    assert holds_bench._schedule(1, extras=[]) == [CEILING, GRPC]


def test_mtls_ratio_pairs_each_round_and_grpc_ratio_uses_the_nearest_ceilings() -> None:
    def phase(kind: str, ops: int) -> PhaseResult:
        return PhaseResult(kind, ops, 1.0, None, None, 0, 0, {}, {}, 0.0)

    phases = [phase(CEILING, 1000), phase(GRPC, 450), phase(PLAINTEXT, 500), phase(CEILING, 1000), phase(PLAINTEXT, 400), phase(GRPC, 380), phase(CEILING, 900)]
    assert holds_bench._round_ratios(phases, GRPC, PLAINTEXT) == (0.9, 0.95)
    assert holds_bench._round_ratios(phases, TRACED, GRPC) == (), "no traced phase, no ratio"
    assert holds_bench._ratios(phases) == (0.45, 380 / 950)
