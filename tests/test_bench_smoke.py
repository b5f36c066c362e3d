"""The benchmarks still run: each script, in quick mode, prints its table (figures unchecked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))


def test_there_are_benchmarks() -> None:
    """The bench folder holds the benchmark scripts this smoke test runs."""
    assert {p.name for p in SCRIPTS} >= {"bench_cached_path.py", "bench_jwt.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_runs_in_quick_mode(script: Path, tmp_path: Path) -> None:
    """A benchmark runs to the end with --quick and prints a Markdown table."""
    if script.name == "bench_jwt.py":
        pytest.importorskip("asapp_auth_jwt")
        pytest.importorskip("jwt")
    done = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| ---" in done.stdout
