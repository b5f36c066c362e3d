"""What every client's cached-path section shares: the variants' names, the pipeline, and the
interleaved rounds with both clocks.

Each round runs every variant once, in a shuffled order, and records its cost per request on two
clocks: the calling thread's CPU time (``time.thread_time``), which a loaded machine barely
moves, and wall time. The auth layer's cost is CPU spent in the calling thread, so the CPU clock
resolves differences of a microsecond that wall time, on a shared machine, does not. Each
variant's cost over another is the median of the per-round differences (paired in a round, so a
neighbour's burst of load hits both sides alike), with the quartiles of those differences.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from asapp_auth import AuthContext, AuthPipeline

ORIGIN = "https://api.chat.example"
URL = f"{ORIGIN}/v1/account"
TOKEN = "tok-bench"
HEADER = ("Authorization", f"Bearer {TOKEN}")

STATIC = "static header"
MINIMAL = "minimal auth"
OURS = "asapp-auth"
# asapp-auth's cost over the minimal hand-written auth, per request: the goal.
GOAL = 1.5

# The three settings, each with its (rounds, requests per round), full and --quick.
ALONE, MOCK, LOOPBACK = "auth alone", "mock transport", "loopback server"
SIZES = {
    ALONE: ((25, 3000), (2, 100)),
    MOCK: ((40, 300), (2, 20)),
    LOOPBACK: ((40, 100), (2, 10)),
}

Clocks = tuple[float, float]  # (CPU seconds, wall seconds)
# A full collection before each timed run (tens of ms with every client imported): off with
# --quick, whose figures only show that the benchmark runs.
COLLECT = True


def pipeline_for(origin: str, headers: dict[str, str] | None = None) -> AuthPipeline:
    """A pipeline for ``origin`` whose customer has a fresh context cached."""
    pipeline = AuthPipeline(origins=[origin])
    auth: dict[str, Any] = {"Token": TOKEN}
    if headers:
        auth["Headers"] = headers
    context = AuthContext({"Auth": auth}, expires_in=3600)
    pipeline.load("alice", lambda needs_refresh: context)
    pipeline.get_context()  # cached before the first timed request
    return pipeline


def timed(body: Callable[[], object]) -> Clocks:
    """``body``'s clocks, with the garbage collector held off: a collection lands in one
    variant's run or another's by chance, and costs more than what is measured here."""
    if COLLECT:
        gc.collect()
    gc.disable()
    try:
        cpu, wall = time.thread_time(), time.perf_counter()
        body()
        return time.thread_time() - cpu, time.perf_counter() - wall
    finally:
        gc.enable()


async def atimed(body: Callable[[], Awaitable[object]]) -> Clocks:
    """As ``timed``, for a coroutine on the running loop."""
    if COLLECT:
        gc.collect()
    gc.disable()
    try:
        cpu, wall = time.thread_time(), time.perf_counter()
        await body()
        return time.thread_time() - cpu, time.perf_counter() - wall
    finally:
        gc.enable()


Samples = dict[str, list[Clocks]]


def new_samples(names: list[str]) -> Samples:
    return {name: [] for name in names}


def shuffled(names: list[str]) -> list[str]:
    order = names[:]
    random.shuffle(order)
    return order


def interleave(names: list[str], run: Callable[[str, int], Clocks], rounds: int, n: int) -> Samples:
    """``rounds`` rounds of every variant once, shuffled; ``run(name, n)`` sends ``n``
    requests and returns their clocks. Per-request microseconds per round."""
    samples = new_samples(names)
    for _ in range(rounds):
        for name in shuffled(names):
            cpu, wall = run(name, n)
            samples[name].append((cpu / n * 1e6, wall / n * 1e6))
    return samples


async def ainterleave(
    names: list[str], run: Callable[[str, int], Awaitable[Clocks]], rounds: int, n: int
) -> Samples:
    """As ``interleave``, with ``run`` a coroutine on the running loop."""
    samples = new_samples(names)
    for _ in range(rounds):
        for name in shuffled(names):
            cpu, wall = await run(name, n)
            samples[name].append((cpu / n * 1e6, wall / n * 1e6))
    return samples


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def summarise(samples: Samples, setting: str, rounds: int, n: int) -> dict[str, Any]:
    """Medians per variant, and each variant's paired cost over the static header and over
    the minimal auth, asapp-auth's over every other variant too (median and quartiles of the
    per-round differences), on both clocks."""
    variants = {
        name: {
            "cpu": statistics.median(s[0] for s in values),
            "wall": statistics.median(s[1] for s in values),
        }
        for name, values in samples.items()
    }
    over: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        # Every variant over the two anchors; asapp-auth over every other variant too.
        bases = list(samples) if name == OURS else [STATIC, MINIMAL]
        for base in bases:
            if name == base or base not in samples:
                continue
            for clock, index in (("cpu", 0), ("wall", 1)):
                diffs = [a[index] - b[index] for a, b in zip(values, samples[base], strict=True)]
                q1, median, q3 = quartiles(diffs)
                over.setdefault(name, {})[f"{clock}_over_{base}"] = [q1, median, q3]
    return {
        "setting": setting,
        "rounds": rounds,
        "per_round": n,
        "variants": variants,
        "over": over,
    }


def size(setting: str, quick: bool) -> tuple[int, int]:
    full, short = SIZES[setting]
    return short if quick else full


def sized(setting: str, quick: bool) -> dict[str, int]:
    """``size`` as keyword arguments: ``rounds`` and ``n``."""
    rounds, n = size(setting, quick)
    return {"rounds": rounds, "n": n}


def section_main(
    doc: str | None, measure: Callable[[argparse.Namespace], dict[str, Any]], argv: list[str]
) -> int:
    """Parse ``--quick``/``--client``/``--out``, run ``measure`` and write its JSON to ``--out``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--client", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    global COLLECT
    COLLECT = not args.quick
    args.out.write_text(json.dumps(measure(args), indent=2))
    return 0


def versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
