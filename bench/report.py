"""The published figures: every benchmark's JSON in bench/results/, rendered for the docs.

    python bench/report.py [--results DIR] [--out DIR]

Writes into docs/performance/ (``--out``): one Markdown file per scenario, holding the tables that
scenario's script prints (docs/performance.md includes them); ``summary.md``, each target met or
missed, and what the figures were measured with; ``results.json``, every scenario's figures in
one file; and ``overhead.png``, scenario 1's auth layer alone per adapter, when matplotlib is
installed (the nox ``bench`` session installs it). A scenario with no results yet gets a line
saying so.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import textwrap
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Scenario name: its script's module (bench_<name>), its results file (<name>.json), its title.
SCENARIOS = {
    "cached_path": "Cached path",
    "stampede": "Refresh stampede",
    "customers": "Many customers",
    "jwt": "JWT signing",
    "oauth2_e2e": "OAuth2 end to end",
    "shared_cache": "Shared cache on Redis",
    "pool": "Connection pools under threads",
}
PACKAGES = [
    "httpx",
    "httpcore",
    "httpx2",
    "httpcore2",
    "requests",
    "aiohttp",
    "httpx-auth",
    "Authlib",
    "PyJWT",
    "cryptography",
    "pluggy",
    "cachetools",
]
# One colour per variant, in every panel.
COLOURS = {
    "minimal auth": "#8c8c8c",
    "minimal auth with a response hook": "#c7c7c7",
    "asapp-auth": "#1f77b4",
    "asapp-auth, token + one more header (redirect guard on)": "#aec7e8",
}


def load(results: Path) -> dict[str, dict[str, Any]]:
    """Each scenario's JSON document, for the scenarios that have one."""
    found = {}
    for name in SCENARIOS:
        path = results / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def scenario_markdown(name: str, data: dict[str, Any] | None) -> str:
    if data is None:
        return f"*Not measured yet: run `nox -s bench` (or `python bench/bench_{name}.py`).*\n"
    module = importlib.import_module(f"bench_{name}")
    text: str = module.markdown(data)
    if data.get("quick"):
        note = "These figures are from a `--quick` run: few rounds, for a smoke test."
        text = f"!!! warning\n    {note}\n\n{text}"
    return text.rstrip() + "\n"


# -- targets --------------------------------------------------------------------------------------


def targets(found: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(scenario, target, measured, verdict) for each scenario measured."""
    rows = []
    if "cached_path" in found:
        rows.append(cached_path_target(found["cached_path"]))
    if "stampede" in found:
        data = found["stampede"]
        stampede = importlib.import_module("bench_stampede")
        parts, met = [], True
        for key, label in (("threads_results", "threads"), ("tasks_results", "tasks")):
            ours = data[key]["asapp-auth"]
            met = met and stampede.target_met(ours)
            parts.append(
                f"{label}: {ours['wall'] / ours['one_caller']:.1f}x, "
                f"{ours['calls']:g} token call(s)"
            )
        rows.append(
            (
                SCENARIOS["stampede"],
                f"every caller answered within {data['target']:g}x the time one caller takes "
                f"({data['threads']} threads; {data['tasks']:,} tasks)",
                "; ".join(parts),
                verdict(met),
            )
        )
    if "stampede" in found and "adapters" in found["stampede"]:
        rows.append(stampede_adapters_target(found["stampede"]["adapters"]))
    if "customers" in found:
        memory = found["customers"]["memory"]
        beyond = memory["beyond_token_bytes"]
        rows.append(
            (
                SCENARIOS["customers"],
                f"under {memory['target']:,} bytes per cached customer beyond its token",
                f"{beyond:,.0f} bytes ({memory['customers']:,} customers)",
                verdict(beyond < memory["target"]),
            )
        )
    if "jwt" in found:
        ratios = {a: r["ours_over_cryptography"] for a, r in found["jwt"]["results"].items()}
        rows.append(
            (
                SCENARIOS["jwt"],
                "asapp-auth-jwt signs at 0.8x the rate of `cryptography` alone or better",
                ", ".join(f"{a} {r:.2f}x" for a, r in ratios.items()),
                verdict(min(ratios.values()) >= 0.8),
            )
        )
    if "oauth2_e2e" in found:
        data = found["oauth2_e2e"]
        e2e = importlib.import_module("bench_oauth2_e2e")
        parts, met = [], True
        for key, label in (("threads_results", "threads"), ("tasks_results", "tasks")):
            met = met and e2e.met(data[key])
            ours = data[key][e2e.AHEAD]
            parts.append(f"{label}: {ours['failed']:,} failed, {ours['waited']:,} waited")
        rows.append(
            (
                SCENARIOS["oauth2_e2e"],
                "with refresh ahead, no request fails at a token expiry and none waits on a "
                "refresh",
                "; ".join(parts),
                verdict(met),
            )
        )
    if "shared_cache" in found:
        rows.append(shared_cache_target(found["shared_cache"]))
    return rows


def cached_path_target(data: dict[str, Any]) -> tuple[str, str, str, str]:
    cached = importlib.import_module("bench_cached_path")
    overs = {
        adapter: cached.ours_over_minimal(data, adapter, cached.ALONE)
        for adapter in cached.ADAPTERS
    }
    return (
        SCENARIOS["cached_path"],
        f"asapp-auth within {data['goal']:g} µs of a minimal hand-written auth per request, on "
        "every adapter (the auth layer alone, CPU time)",
        ", ".join(f"{adapter} {value:+.1f} µs" for adapter, value in overs.items()),
        verdict(all(value <= data["goal"] for value in overs.values())),
    )


def stampede_adapters_target(data: dict[str, Any]) -> tuple[str, str, str, str]:
    adapters = data["adapters"]
    calls = {name: figures["stampede"]["calls_max"] for name, figures in adapters.items()}
    failed = sum(
        count
        for figures in adapters.values()
        for answer, count in figures["stampede"]["answers"].items()
        if answer != "200"
    )
    over = ", ".join(
        f"{name} {(f['stampede']['wall'] - f['floor']['wall']) * 1e3:+,.0f} ms"
        for name, f in adapters.items()
    )
    return (
        "Refresh stampede, every adapter",
        f"one token call per burst on an expired context, on every adapter ({data['threads']} "
        f"threads; {data['tasks']:,} tasks), and every request answered",
        f"{max(calls.values()):g} token call(s) at most, {failed:g} failed; wall over the "
        f"no-refresh floor: {over}",
        verdict(max(calls.values()) == 1 and failed == 0),
    )


def shared_cache_target(data: dict[str, Any]) -> tuple[str, str, str, str]:
    fleet = data["fleet"]
    # One server and, where measured, a 3-primary cluster: each must make one call.
    shared = [c for c in next(iter(fleet.values()))["on expiry"] if c.startswith("shared")]
    calls = max(
        fleet[plan]["on expiry"][cache]["token_calls_max"] for plan in fleet for cache in shared
    )
    failed = sum(
        figures["failures"]
        for cases in fleet.values()
        for caches in cases.values()
        for figures in caches.values()
    )
    return (
        SCENARIOS["shared_cache"],
        f"one token call for {data['processes']} processes x {data['callers']} requests at a "
        f"token expiry (one server{' and a cluster' if len(shared) > 1 else ''}), and no "
        "failed request",
        f"{calls:g} token call(s) at most; {failed:,} failed",
        verdict(calls == 1 and failed == 0),
    )


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def environment(results: Path, found: dict[str, dict[str, Any]]) -> str:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    # The day each results file was written: scenarios not run again keep their own.
    days: dict[str, list[str]] = {}
    for name in found:
        written = (results / f"{name}.json").stat().st_mtime
        day = datetime.fromtimestamp(written, UTC).date().isoformat()
        days.setdefault(day, []).append(SCENARIOS[name].lower())
    if len(days) == 1:
        when = f"on {next(iter(days))}"
    else:
        when = "; ".join(f"{', '.join(names)} on {day}" for day, names in sorted(days.items()))
        when = f"({when}; versions as installed for the latest)"
    return (
        f"Measured {when} with Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()} ({os.cpu_count()} CPUs, shared with other work: the figures are "
        f"noisy), {', '.join(versions)}."
    )


def summary(results: Path, found: dict[str, dict[str, Any]]) -> str:
    if not found:
        return "*Not measured yet: run `nox -s bench`.*\n"
    lines = ["| scenario | target | measured | verdict |", "| --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in targets(found)]
    lines += ["", environment(results, found)]
    return "\n".join(lines) + "\n"


# -- chart ----------------------------------------------------------------------------------------


def overhead_chart(data: dict[str, Any], path: Path) -> None:
    """Scenario 1, the auth layer alone: CPU µs per request over the static header, a panel
    per adapter, with the goal drawn at the minimal auth's cost plus the goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cached = importlib.import_module("bench_cached_path")
    adapters = data["adapters"]
    fig, axes = plt.subplots(3, 2, figsize=(11, 8.5))
    for ax, adapter in zip(axes.flat, cached.ADAPTERS, strict=True):
        figures = adapters[adapter]["settings"][cached.ALONE]
        names = [name for name in figures["variants"] if name != cached.STATIC]
        overs = [cached.over(figures, name, cached.STATIC)[1] for name in names]
        labels = [textwrap.fill(name, 30) for name in names]
        colours = [COLOURS.get(name, "#9467bd") for name in names]
        bars = ax.barh(labels, overs, color=colours)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        # Where asapp-auth's bar would end at the goal: its paired cost over the static header,
        # less its paired cost over the minimal auth, plus the goal (as the table judges it).
        ours = cached.over(figures, cached.OURS, cached.STATIC)[1]
        goal = ours - cached.over(figures, cached.OURS, cached.MINIMAL)[1] + data["goal"]
        ax.axvline(goal, color="#d62728", linestyle="--", linewidth=1)
        ax.text(
            goal,
            len(names) - 0.45,
            f" goal: minimal + {data['goal']:g} µs",
            color="#d62728",
            fontsize=7,
            va="top",
        )
        ax.bar_label(
            bars,
            labels=[f"{v:+.1f}" for v in overs],
            padding=3,
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},  # over the goal line
        )
        low, high = min(0.0, *overs, goal), max(0.0, *overs, goal)
        span = (high - low) or 1.0
        ax.set_xlim(low - (0.2 if low < 0 else 0.05) * span, high + 0.3 * span)
        static = figures["variants"][cached.STATIC]["cpu"]
        ax.set_title(f"{adapter} (static header: {static:,.1f} µs)", fontsize=10, loc="left")
        ax.tick_params(axis="y", labelsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("CPU µs per request over the static header (median of paired rounds)")
    fig.suptitle("Cached path, the auth layer alone: what each auth adds to a request", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    found = load(args.results)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in SCENARIOS:
        (out / f"{name}.md").write_text(scenario_markdown(name, found.get(name)))
    (out / "summary.md").write_text(summary(args.results, found))
    document = {"environment": environment(args.results, found) if found else None, **found}
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    if "cached_path" in found:
        try:
            overhead_chart(found["cached_path"], out / "overhead.png")
        except ImportError:
            print("report: matplotlib is not installed, overhead.png is unchanged", file=sys.stderr)
    written = sorted(p.name for p in out.iterdir())
    print(f"wrote {', '.join(written)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
