"""The committed gRPC stubs match the .proto contracts they were generated from."""

from ridgeline import codegen


def test_committed_stubs_match_a_fresh_generation() -> None:
    stale = codegen.stale_stubs()
    assert stale == [], f"run `python -m ridgeline.codegen` and commit: stale {stale}"
