"""Cached-path cost per request, for every adapter: asapp-auth against the same client setting a
static header by hand, a minimal hand-written auth for that client, and the auth libraries users
pick for it.

Six adapters (httpx and httpx2, each sync and async; requests; aiohttp), each in three settings:
the auth layer alone, driven as the client drives it on prebuilt requests (no client, no I/O);
whole requests through the client's mock transport (``MockTransport``; for requests a mounted
transport adapter with a canned answer; for aiohttp, which has none, a last middleware with a
canned answer); and whole requests to a server on 127.0.0.1. The minimal auth sets one header:
an ``httpx.Auth``/``httpx2.Auth`` subclass, a requests ``AuthBase``, an aiohttp client middleware.
Goal: asapp-auth within 1.5 µs of the minimal auth per request.

Each client runs in a process of its own (``_cached_<client>.py``), one after the other: authlib's
httpx integration binds to httpx2 whenever httpx2 is importable, so the httpx process keeps httpx2
out and its authlib anchor runs on httpx, while the httpx2 process has authlib on httpx2. Within a
process every variant of a setting runs in interleaved rounds (see ``_cached_common``), timed on
the calling thread's CPU clock and on the wall clock.

    python bench/bench_cached_path.py [--quick]

Writes bench/results/cached_path.json and prints Markdown tables. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _cached_common import ALONE, GOAL, LOOPBACK, MINIMAL, MOCK, OURS, SIZES, STATIC

HERE = Path(__file__).resolve().parent
# (section script, --client): each writes its adapters' figures.
SECTIONS = [
    ("_cached_httpx.py", "httpx"),
    ("_cached_httpx.py", "httpx2"),
    ("_cached_requests.py", ""),
    ("_cached_aiohttp.py", ""),
]
ADAPTERS = ["httpx", "httpx async", "httpx2", "httpx2 async", "requests", "aiohttp"]
SETTINGS = [ALONE, MOCK, LOOPBACK]
HOOKED = "minimal auth with a response hook"  # the requests section's extra anchor


def run_section(script: str, client: str, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "section.json"
        args = [sys.executable, str(HERE / script), "--out", str(out)]
        args += ["--client", client] if client else []
        args += ["--quick"] if quick else []
        subprocess.run(args, check=True)
        found: dict[str, Any] = json.loads(out.read_text())
        return found


def over(figures: dict[str, Any], name: str, base: str, clock: str = "cpu") -> list[float]:
    """[q1, median, q3] of ``name``'s per-round cost over ``base``."""
    found: list[float] = figures["over"][name][f"{clock}_over_{base}"]
    return found


def ours_over_minimal(data: dict[str, Any], adapter: str, setting: str) -> float:
    return over(data["adapters"][adapter]["settings"][setting], OURS, MINIMAL)[1]


def goal_verdict(figures: dict[str, Any]) -> str:
    """Met or missed by the paired differences: by their quartiles when both lie on one side
    of the goal, else by their median, unless the quartiles lie further apart than twice the
    goal: then the setting's noise cannot resolve it either way."""
    q1, median, q3 = over(figures, OURS, MINIMAL)
    if q3 <= GOAL or q1 > GOAL:
        return "met" if q3 <= GOAL else "**missed**"
    if q3 - q1 > 2 * GOAL:
        return f"not resolved (quartiles {q3 - q1:,.0f} µs apart)"
    return "met" if median <= GOAL else "**missed**"


def spread(values: list[float]) -> str:
    q1, median, q3 = values
    return f"{median:+.1f} ({q1:+.1f} to {q3:+.1f})"


def goal_table(data: dict[str, Any]) -> str:
    lines = [
        "### Every adapter: asapp-auth beside the same client's own ways",
        "",
        "CPU µs per request of the calling thread (medians over rounds); *over*: the median of "
        "the per-round differences, with their quartiles; the last column, the same on the wall "
        "clock.",
        "",
        "| adapter | setting | static header | minimal auth | asapp-auth | over static "
        f"| over minimal | goal: within {GOAL:g} µs | wall: over minimal |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for adapter in ADAPTERS:
        settings = data["adapters"][adapter]["settings"]
        for setting in SETTINGS:
            figures = settings[setting]
            cpu = {name: v["cpu"] for name, v in figures["variants"].items()}
            met = goal_verdict(figures)
            lines.append(
                f"| {adapter} | {setting} | {cpu[STATIC]:.1f} | {cpu[MINIMAL]:.1f} "
                f"| {cpu[OURS]:.1f} | {spread(over(figures, OURS, STATIC))} "
                f"| {spread(over(figures, OURS, MINIMAL))} | {met} "
                f"| {spread(over(figures, OURS, MINIMAL, 'wall'))} |"
            )
    return "\n".join(lines)


def hook_notes(data: dict[str, Any]) -> list[str]:
    """For requests: asapp-auth over the minimal auth that registers a response hook too."""
    notes = []
    for adapter in ADAPTERS:
        settings = data["adapters"][adapter]["settings"]
        if HOOKED not in settings[ALONE]["variants"]:
            continue
        figures = ", ".join(
            f"{setting} {spread(over(settings[setting], OURS, HOOKED))}" for setting in SETTINGS
        )
        notes.append(
            f"{adapter}: a requests auth sees a response (a 401, a redirect) only through a "
            "response hook, and one hook that only returns the response costs the minimal auth "
            f"what the *{HOOKED}* row of the {adapter} table shows. asapp-auth over that auth, "
            f"CPU µs per request: {figures}."
        )
    return notes


def adapter_table(adapter: str, found: dict[str, Any]) -> str:
    """Every variant measured on this adapter, per setting: CPU µs and the cost over static."""
    settings = found["settings"]
    names: list[str] = []
    for setting in SETTINGS:
        names += [name for name in settings[setting]["variants"] if name not in names]
    head = "| variant |" + "".join(f" {s} | over static |" for s in SETTINGS)
    lines = [
        f"### {adapter}",
        "",
        f"Mock transport: {found['mock']}. "
        + ", ".join(f"{k} {v}" for k, v in found["versions"].items())
        + ".",
        "",
        head,
        "| --- |" + " ---: | ---: |" * len(SETTINGS),
    ]
    for name in names:
        row = f"| {name} |"
        for setting in SETTINGS:
            figures = settings[setting]
            if name not in figures["variants"]:
                row += " | |"
                continue
            cpu = figures["variants"][name]["cpu"]
            extra = "" if name == STATIC else f"{over(figures, name, STATIC)[1]:+.1f}"
            row += f" {cpu:.1f} | {extra} |"
        lines.append(row)
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """The Markdown tables, from the JSON this script writes."""
    rounds = ", ".join(
        f"{setting}: {figures['rounds']} rounds of {figures['per_round']:,}"
        for setting, figures in data["adapters"]["httpx"]["settings"].items()
    )
    parts = [goal_table(data), *hook_notes(data), f"Rounds x requests per variant: {rounds}."]
    parts += [adapter_table(adapter, data["adapters"][adapter]) for adapter in ADAPTERS]
    return "\n\n".join(parts)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, for a smoke run")
    args = parser.parse_args(argv)
    adapters: dict[str, Any] = {}
    for script, client in SECTIONS:
        adapters.update(run_section(script, client, args.quick))
    data = {
        "quick": args.quick,
        "goal": GOAL,
        "sizes": SIZES,
        "adapters": {name: adapters[name] for name in ADAPTERS},
    }
    print(markdown(data))
    # BENCH_RESULTS: another folder for the results (the smoke test's, say).
    out = Path(os.environ.get("BENCH_RESULTS") or HERE / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "cached_path.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
