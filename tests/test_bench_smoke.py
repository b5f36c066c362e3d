"""The benchmarks still run: each script, in quick mode, prints its tables and writes its results,
and the report renders them for the docs (figures unchecked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
# The shared-cache benchmark needs redis-server and has a smoke test of its own
# (test_bench_shared_cache_smoke.py), which also checks its token counts. The pool benchmark
# (bench_pool.py) loads third-party pools with hundreds of threads on purpose: it runs in the
# nox bench session only.
SCRIPTS = sorted(
    p for p in BENCH.glob("bench_*.py") if p.stem not in ("bench_shared_cache", "bench_pool")
)
SCENARIOS = ["cached_path", "stampede", "customers", "jwt", "oauth2_e2e"]
# The summary has a row per scenario, and one more for the stampede on every adapter.
SUMMARY_ROWS = len(SCENARIOS) + 1
ADAPTERS = ["httpx", "httpx async", "httpx2", "httpx2 async", "requests", "aiohttp"]
SETTINGS = ["auth alone", "mock transport", "loopback server"]
E2E_NAMES = [
    "floor: raw httpx, valid static token",
    "asapp-auth, refresh ahead",
    "asapp-auth, refresh_ahead=0",
    "httpx-auth",
    "authlib",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder for this module's runs, so they leave bench/results alone."""
    return tmp_path_factory.mktemp("bench-results")


def needs(script: str) -> None:
    if script in ("bench_jwt", "bench_oauth2_e2e", "bench_dpop"):
        pytest.importorskip("asapp_auth_jwt" if script == "bench_jwt" else "asapp_auth_oauth2")
    if script in ("bench_stampede", "bench_oauth2_e2e"):
        pytest.importorskip("httpx_auth")
        pytest.importorskip("authlib")
    if script in ("bench_jwt", "bench_dpop"):
        pytest.importorskip("jwt")


def run(args: list[str], results: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,  # a bound, not a measure: the machine may be loaded
        check=False,
        env={**os.environ, "BENCH_RESULTS": str(results)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def results_of(scenario: str, results: Path) -> dict[str, Any]:
    """A scenario's quick results, running its script unless this module already has."""
    path = results / f"{scenario}.json"
    if not path.exists():
        needs(f"bench_{scenario}")
        run([str(BENCH / f"bench_{scenario}.py"), "--quick"], results)
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_there_are_benchmarks() -> None:
    """The bench folder holds a benchmark script for each scenario the report publishes."""
    assert {p.stem for p in SCRIPTS} >= {f"bench_{name}" for name in SCENARIOS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_runs_in_quick_mode(script: Path, results: Path) -> None:
    """A benchmark runs to the end with --quick, prints a Markdown table and writes its JSON."""
    needs(script.stem)
    done = run([str(script), "--quick"], results)
    assert "| ---" in done.stdout
    assert (results / f"{script.stem.removeprefix('bench_')}.json").exists()


def test_dpop_results_compare_proofs_with_signing_alone(results: Path) -> None:
    """The DPoP bench reports, per key type, proofs and hook calls per second beside signing
    alone, with the ratios."""
    data = results_of("dpop", results)
    assert data["quick"] is True
    assert set(data["results"]) == {"ES256", "EdDSA"}
    for row in data["results"].values():
        assert set(row["median_ops_per_second"]) == {"signing_alone", "proof", "request_proof"}
        assert row["proof_over_signing"] > 0
        assert row["hook_over_signing"] > 0


def test_oauth2_e2e_results_have_every_library(results: Path) -> None:
    """Scenario 5 reports each library's load figures, threads and tasks, with its settings."""
    data = results_of("oauth2_e2e", results)
    assert data["quick"] is True
    assert data["refresh_ahead"] > 0
    assert data["expiry_margin"] > 0
    for key in ("threads_results", "tasks_results"):
        assert list(data[key]) == E2E_NAMES
        for summary in data[key].values():
            assert summary["requests"] > 0
            assert len(summary["samples"]) == data["rounds"]
            for field in ("rps", "failed", "api_401", "token_calls", "p99_ms", "max_ms", "waited"):
                assert isinstance(summary[field], int | float), field


def test_stampede_results_compare_with_one_caller(results: Path) -> None:
    """Scenario 2 measures each library with one caller too, the base of its target."""
    data = results_of("stampede", results)
    for key in ("threads_results", "tasks_results"):
        for summary in data[key].values():
            assert summary["one_caller"] > 0
            assert len(summary["one_caller_samples"]) == data["rounds"]


def test_cached_path_results_cover_every_adapter_and_setting(results: Path) -> None:
    """Scenario 1 measures every adapter in every setting, each beside the same client's
    static header and minimal auth, with asapp-auth's paired cost over both."""
    data = results_of("cached_path", results)
    assert list(data["adapters"]) == ADAPTERS
    for adapter in ADAPTERS:
        settings = data["adapters"][adapter]["settings"]
        assert list(settings) == SETTINGS
        for figures in settings.values():
            assert {"static header", "minimal auth", "asapp-auth"} <= set(figures["variants"])
            for base in ("static header", "minimal auth"):
                for clock in ("cpu", "wall"):
                    q1, median, q3 = figures["over"]["asapp-auth"][f"{clock}_over_{base}"]
                    assert q1 <= median <= q3
    # Each anchor library runs on the client it is named for.
    assert (
        "authlib OAuth2Client"
        in data["adapters"]["httpx"]["settings"]["mock transport"]["variants"]
    )
    assert (
        "authlib OAuth2Client (on httpx2)"
        in data["adapters"]["httpx2"]["settings"]["mock transport"]["variants"]
    )


def test_stampede_results_cover_every_adapter(results: Path) -> None:
    """Scenario 2 bursts every adapter on an expired context and on a fresh one (its floor)."""
    data = results_of("stampede", results)
    adapters = data["adapters"]["adapters"]
    assert list(adapters) == ADAPTERS
    for figures in adapters.values():
        assert figures["floor"]["calls_max"] == 0
        assert figures["stampede"]["calls_min"] >= 1
        assert figures["stampede"]["wall"] > 0


def test_report_renders_every_scenario(results: Path, tmp_path: Path) -> None:
    """The report writes a Markdown file per scenario, the targets' summary, the combined
    JSON and the chart."""
    for scenario in SCENARIOS:
        results_of(scenario, results)
    run([str(BENCH / "report.py"), "--results", str(results), "--out", str(tmp_path)], results)
    for scenario in SCENARIOS:
        text = (tmp_path / f"{scenario}.md").read_text()
        assert "`--quick` run" in text
        assert "| ---" in text
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("| met |") + summary.count("| **missed** |") == SUMMARY_ROWS
    assert "Not measured yet" in (tmp_path / "pool.md").read_text()
    combined = json.loads((tmp_path / "results.json").read_text())
    assert set(combined) == {"environment", *SCENARIOS}
    try:
        import matplotlib  # noqa: F401  (only the nox bench session installs it)
    except ImportError:
        assert not (tmp_path / "overhead.png").exists()
    else:
        assert (tmp_path / "overhead.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
