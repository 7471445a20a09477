"""A 2-minute soak: 64 concurrent streaming clients against `parrot serve`; nothing fails
and the server's memory stays flat (benchmarks/bench_soak.py runs 10 minutes)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.slow
def test_64_streaming_clients_for_two_minutes_all_served_memory_flat():
    from bench_soak import soak

    result = soak(minutes=2, clients=64, warmup_s=20)
    assert result["failed"] == 0, result["errors"]
    assert result["served"] > 64
    assert result["rss_growth_pct"] < 5, result
    health = result["health_after"]
    assert (health["running"], health["queued"], health["in_flight"]) == (0, 0, 0)
