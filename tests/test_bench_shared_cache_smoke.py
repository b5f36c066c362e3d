"""The shared-cache benchmark still runs: in quick mode it writes its results, and a fleet on the
shared cache makes one token call where per-process caches make one each (timings unchecked)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SHARED, PER_PROCESS = "shared (RedisContextCache)", "per-process (MemoryContextCache)"
CLUSTER = "shared on a 3-primary cluster (RedisContextCache, cluster=True)"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, str]:
    """The JSON and Markdown of one quick run, written to a folder of this module's own."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the shared-cache benchmark")
        pytest.skip(message)
    out = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_shared_cache.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "BENCH_RESULTS": str(out)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data: dict[str, Any] = json.loads((out / "shared_cache.json").read_text())
    return data, (out / "shared_cache.md").read_text(), done.stdout


def test_quick_run_writes_markdown_and_json(results: tuple[dict[str, Any], str, str]) -> None:
    """A quick run prints its Markdown tables and writes the same to shared_cache.md."""
    data, text, printed = results
    assert data["quick"] is True
    assert "| ---" in text
    assert text.strip() == printed.strip()


@pytest.mark.parametrize("plan", ["threads", "asyncio", "threads, one caller"])
def test_one_token_call_for_a_shared_fleet(
    results: tuple[dict[str, Any], str, str], plan: str
) -> None:
    """Cold and on expiry, the shared fleet makes one token call (on one server and on a cluster)
    and per-process caches one per process; with a valid context none. Every request is counted
    (failures are figures here)."""
    data = results[0]
    fleet = data["fleet"][plan]
    callers = data["fleet_plans"][plan]["callers"]
    for case in ("cold start", "on expiry"):
        assert fleet[case][SHARED]["token_calls_max"] == 1, case
        assert fleet[case][CLUSTER]["token_calls_max"] == 1, case
        assert fleet[case][PER_PROCESS]["token_calls_min"] == data["processes"], case
    assert fleet["valid context, no refresh"]["either cache (in turn)"]["token_calls_max"] == 0
    for caches in fleet.values():
        for summary in caches.values():
            assert isinstance(summary["failures"], int)
            for sample in summary["samples"]:
                answered = sum(sample["answers"].values()) + sample["exceptions"]
                assert answered == callers * data["processes"]
            for field in ("all_served", "wall", "api_401"):
                assert isinstance(summary[field], int | float), field


def test_cached_path_and_front_miss_figures_are_there(
    results: tuple[dict[str, Any], str, str],
) -> None:
    """Per-request costs for both caches, sync and async; front-miss latencies; read rates."""
    data = results[0]
    names = {
        "raw httpx, static header",
        "MemoryContextCache",
        "RedisContextCache, fresh front copy",
        "RedisContextCache on a cluster, fresh front copy",
    }
    for medians in data["cached_path"].values():
        assert set(medians) == names
    assert len(data["cached_path"]) == 2
    for figures in data["front_miss"].values():
        for field in ("busy_median_us", "busy_p90_us", "idle_median_us", "idle_p90_us"):
            assert figures[field] > 0, field
    runs = data["front_ttl_measured"]["runs"]
    assert [run["rate"] for run in runs] == [100, 1000, None]
    assert all(run["requests"] > 0 for run in runs)
    assert [row["rate"] for row in data["front_ttl_worked"]] == [10, 100, 1000, 10000]
