"""Benchmark engines: each runs on throwaway servers, measures against a baseline of the same run and returns a report.

Engines only: ``ridgeline bench`` (deploy/cli/bench.py) parses the options and prints
the reports; nothing here imports the CLI.
"""

__all__ = ["cluster_bench", "database_failover", "holds_bench", "settlement_bench", "treks_bench"]
