"""Sync connection pools under many threads: does a request fail or hang (encode/httpcore#1110)?

httpcore 1.0.9's sync pool (httpx's) can close a connection it has already assigned to a queued
request: the assignment leaves the connection IDLE until the waiting thread starts on it, and
another thread's pass, counting every connection (not only the idle ones) against
``max_keepalive_connections``, closes it. The waiting request then fails on a closed socket
(``ReadError`` in these runs), or, if it is already blocked reading, waits for the read timeout.
httpcore2 (httpx2's pool) keeps a connection referenced by a queued request out of the idle
count and out of the connections it may close.

Each run sends ``threads`` x ``requests`` GETs through one client shared by all threads, released
together, to a server on 127.0.0.1 in a child process (a ``FakePlatform`` that answers after a few
milliseconds, so requests queue for connections). Limits as httpx's defaults are shaped: 100
connections, 20 kept alive; and, as a control, keep-alive equal to the pool size (the workaround).
Timeouts are short and every count is bounded: a request that hangs shows as a read timeout after
``READ_TIMEOUT`` seconds. Runs alternate between the cases.

    python bench/bench_pool.py [--quick]

Writes bench/results/pool.json and prints a Markdown table. Figures, not assertions; not part of
the test suite (it is the nox ``bench`` session's).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

READ_TIMEOUT = 3.0
# A run that has not ended this long after its release is cut short (its threads are daemons).
RUN_DEADLINE = 120.0
LATENCY = 0.005
CASES = [
    ("httpx", 100, 20),
    ("httpx", 100, 100),
    ("httpx2", 100, 20),
    ("httpx2", 100, 100),
]
SERVER = f"""
import sys
from asapp_auth.testing import FakePlatform
with FakePlatform(latency={LATENCY}) as platform:
    print(platform.url, flush=True)
    sys.stdin.read()  # until the parent closes it
"""


def case_name(client: str, connections: int, keepalive: int) -> str:
    return f"{client}, max_connections={connections}, max_keepalive_connections={keepalive}"


def one_run(
    client: str, connections: int, keepalive: int, *, url: str, threads: int, requests: int
) -> dict[str, Any]:
    # Imported here: report.py imports this module for its tables beside benchmarks that keep
    # httpx2 out of their process.
    module: Any = importlib.import_module(client)
    timeout = module.Timeout(connect=5.0, read=READ_TIMEOUT, write=5.0, pool=30.0)
    limits = module.Limits(max_connections=connections, max_keepalive_connections=keepalive)
    outcomes: Counter[str] = Counter()
    slowest = [0.0]
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    with module.Client(timeout=timeout, limits=limits) as shared:

        def worker() -> None:
            barrier.wait()
            for _ in range(requests):
                began = time.perf_counter()
                try:
                    outcome = str(shared.get(url).status_code)
                except Exception as exc:
                    outcome = type(exc).__name__
                took = time.perf_counter() - began
                with lock:
                    outcomes[outcome] += 1
                    slowest[0] = max(slowest[0], took)

        workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
        for thread in workers:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        deadline = started + RUN_DEADLINE
        for thread in workers:
            thread.join(max(0.0, deadline - time.perf_counter()))
        wall = time.perf_counter() - started
        unfinished = sum(thread.is_alive() for thread in workers)
    with lock:
        answered = dict(outcomes)
    sent = threads * requests
    failed = sum(count for outcome, count in answered.items() if outcome != "200")
    return {
        "requests": sent,
        "outcomes": answered,
        "failed": failed,
        "read_timeouts": answered.get("ReadTimeout", 0),
        "unfinished_threads": unfinished,
        "slowest": slowest[0],
        "wall": wall,
    }


def markdown(data: dict[str, Any]) -> str:
    """The Markdown table, from the JSON this script writes."""
    lines = [
        f"### {data['threads']} threads x {data['requests']} requests, one client, "
        f"{data['runs']} run(s) per case",
        "",
        f"Server on 127.0.0.1 answering after {data['latency'] * 1e3:g} ms; read timeout "
        f"{data['read_timeout']:g} s. "
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items())
        + ".",
        "",
        "| pool | limits (connections / kept alive) | requests | failed | of which read timeouts "
        "| runs with a failure | failed per run | slowest request s | outcomes |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for case in data["cases"].values():
        runs = case["runs"]
        outcomes: Counter[str] = Counter()
        for run in runs:
            outcomes.update(run["outcomes"])
        failed = sum(run["failed"] for run in runs)
        lines.append(
            f"| {case['pool']} | {case['max_connections']} / {case['max_keepalive_connections']} "
            f"| {sum(run['requests'] for run in runs):,} | {failed:,} "
            f"| {sum(run['read_timeouts'] for run in runs):,} "
            f"| {sum(run['failed'] > 0 for run in runs)} of {len(runs)} "
            f"| {', '.join(str(run['failed']) for run in runs)} "
            f"| {max(run['slowest'] for run in runs):.2f} "
            f"| {', '.join(f'{v:,} x {k}' for k, v in sorted(outcomes.items()))} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer threads and runs")
    args = parser.parse_args(argv)
    threads, requests, runs = (150, 2, 1) if args.quick else (342, 10, 6)
    samples: dict[str, list[dict[str, Any]]] = {case_name(*case): [] for case in CASES}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"{server.stdout.readline().strip()}/public"
        for _ in range(runs):
            for case in random.sample(CASES, len(CASES)):
                samples[case_name(*case)].append(
                    one_run(*case, url=url, threads=threads, requests=requests)
                )
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    data = {
        "quick": args.quick,
        "threads": threads,
        "requests": requests,
        "runs": runs,
        "latency": LATENCY,
        "read_timeout": READ_TIMEOUT,
        "versions": {name: metadata.version(name) for name in ("httpcore", "httpcore2")},
        "cases": {
            case_name(*case): {
                "pool": "httpcore (httpx)" if case[0] == "httpx" else "httpcore2 (httpx2)",
                "max_connections": case[1],
                "max_keepalive_connections": case[2],
                "runs": samples[case_name(*case)],
            }
            for case in CASES
        },
    }
    print(markdown(data))
    # BENCH_RESULTS: another folder for the results.
    out = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "pool.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
