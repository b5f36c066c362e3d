"""Many customers in one pipeline: memory per cached customer, and lookups per second.

A server acting for many customers keeps each one's context in one ``AuthPipeline``'s cache. Here
100,000 customers are each fetched once through ``pipeline.for_customer(id)``, answered by a plugin
(registered with ``pipeline.register``) giving every customer a 40-byte token that lasts an hour.
The pipeline is built with ``cache_size`` equal to the number of customers: the default of 10,000
would keep only the last 10,000.

Memory is what ``tracemalloc`` sees allocated while the cache fills (after a garbage collection),
per customer, less the 40 bytes of the token itself; customer ids are made beforehand, as an app
has them already. The allocation sites that hold the rest are listed. Target: under 1 KiB per
customer. Lookups are timed for random cached customers, in interleaved rounds (medians): the
context alone (``get_context(customer=...)``, with the ``Customer`` made beforehand or by
``for_customer`` each time) and a whole ``httpx.Client`` request through ``httpx.MockTransport``
with ``auth=pipeline.for_customer(id)``, beside the same request with a static header.

    python bench/bench_customers.py [--quick]

Writes bench/results/customers.json and prints Markdown tables. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import os
import random
import secrets
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from asapp_auth import AuthContext, AuthPipeline, Customer, hookimpl

ORIGIN = "https://api.chat.example"
URL = f"{ORIGIN}/v1/account"
TOKEN_BYTES = 40
TARGET = 1024


class EveryCustomer:
    """Answers every customer with a new 40-byte token that lasts an hour."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def provide_context(self, customer: Customer, needs_refresh: bool) -> AuthContext:
        self.calls += 1
        token = secrets.token_hex(TOKEN_BYTES // 2)
        return AuthContext({"Auth": {"Token": token}}, expires_in=3600)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"{}")


def fill(n: int) -> tuple[AuthPipeline, EveryCustomer, list[str], dict[str, Any]]:
    """Cache ``n`` customers' contexts under tracemalloc; return what it saw."""
    ids = [f"customer-{i:06d}" for i in range(n)]
    plugin = EveryCustomer()
    pipeline = AuthPipeline(origins=[ORIGIN], cache_size=n + 1)
    pipeline.register(plugin)
    pipeline.for_customer("warm-up").get_context()  # first-call set-up, not per customer
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    base, _ = tracemalloc.get_traced_memory()
    calls = plugin.calls
    started = time.perf_counter()
    for customer_id in ids:
        pipeline.for_customer(customer_id).get_context()
    took = time.perf_counter() - started
    calls = plugin.calls - calls
    gc.collect()
    used, _ = tracemalloc.get_traced_memory()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    sites = [
        (stat.traceback[0], stat.size_diff)
        for stat in after.compare_to(before, "lineno")
        if stat.size_diff > 0
    ]
    sites.sort(key=lambda site: -site[1])
    per_customer = (used - base) / n
    memory = {
        "customers": n,
        "traced_bytes": used - base,
        "bytes_per_customer": per_customer,
        "token_bytes": TOKEN_BYTES,
        "token_str_object_bytes": sys.getsizeof(secrets.token_hex(TOKEN_BYTES // 2)),
        "beyond_token_bytes": per_customer - TOKEN_BYTES,
        "target": TARGET,
        "fill_seconds_traced": took,
        "plugin_calls": calls,
        "sites": [
            {
                "site": f"{Path(frame.filename).name}:{frame.lineno}",
                "code": linecache.getline(frame.filename, frame.lineno).strip(),
                "bytes_per_customer": size / n,
            }
            for frame, size in sites[:12]
        ],
    }
    return pipeline, plugin, ids, memory


def fill_rate(n: int) -> float:
    """Customers cached per second with tracemalloc off."""
    pipeline = AuthPipeline(origins=[ORIGIN], cache_size=n + 1)
    pipeline.register(EveryCustomer())
    ids = [f"rate-{i:06d}" for i in range(n)]
    started = time.perf_counter()
    for customer_id in ids:
        pipeline.for_customer(customer_id).get_context()
    return n / (time.perf_counter() - started)


def lookups(
    pipeline: AuthPipeline, ids: list[str], rounds: int, per_round: int, requests: int
) -> dict[str, float]:
    """Median microseconds per lookup for each way, over interleaved rounds."""
    client = httpx.Client(transport=httpx.MockTransport(ok))
    raw = httpx.Client(
        transport=httpx.MockTransport(ok), headers={"Authorization": "Bearer " + "t" * 40}
    )

    def prebuilt(n: int) -> float:
        customers = [Customer.create(i) for i in random.choices(ids, k=n)]
        started = time.perf_counter()
        for customer in customers:
            pipeline.get_context(customer=customer)
        return time.perf_counter() - started

    def by_id(n: int) -> float:
        chosen = random.choices(ids, k=n)
        started = time.perf_counter()
        for customer_id in chosen:
            pipeline.for_customer(customer_id).get_context()
        return time.perf_counter() - started

    def request(n: int) -> float:
        chosen = random.choices(ids, k=n)
        started = time.perf_counter()
        for customer_id in chosen:
            client.get(URL, auth=pipeline.for_customer(customer_id))
        return time.perf_counter() - started

    def static(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            raw.get(URL)
        return time.perf_counter() - started

    ways: dict[str, tuple[Callable[[int], float], int]] = {
        "get_context(customer=...), Customer made beforehand": (prebuilt, per_round),
        "for_customer(id).get_context()": (by_id, per_round),
        "httpx.Client.get, auth=pipeline.for_customer(id)": (request, requests),
        "httpx.Client.get, static Authorization header (no asapp-auth)": (static, requests),
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name in random.sample(list(ways), len(ways)):
            run, n = ways[name]
            samples[name].append(run(n) / n * 1e6)
    client.close()
    raw.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def report(memory: dict[str, Any], timings: dict[str, float]) -> str:
    n = memory["customers"]
    beyond = memory["beyond_token_bytes"]
    verdict = "within target" if beyond < TARGET else f"over target by {beyond - TARGET:,.0f} B"
    lines = [
        f"### Memory, {n:,} customers cached in one AuthPipeline",
        "",
        "| measure | bytes |",
        "| --- | ---: |",
        f"| traced per customer, all told | {memory['bytes_per_customer']:,.0f} |",
        f"| token bytes per customer | {TOKEN_BYTES} |",
        f"| **per customer beyond the token bytes** | **{beyond:,.0f}** |",
        f"| target | < {TARGET:,} ({verdict}) |",
        "",
        f"Filling took {memory['fill_seconds_traced']:.2f} s under tracemalloc; "
        f"{memory['fill_rate']:,.0f} customers/s without it. Plugin calls: "
        f"{memory['plugin_calls']:,} while filling, "
        f"{memory['plugin_calls_during_lookups']:,} during the lookups below.",
        "",
        "### Where the bytes go (allocation sites, while filling)",
        "",
        "| site | code | bytes per customer |",
        "| --- | --- | ---: |",
    ]
    for site in memory["sites"][:10]:
        code = site["code"].replace("|", "\\|")
        lines.append(f"| {site['site']} | `{code}` | {site['bytes_per_customer']:,.1f} |")
    lines += [
        "",
        "### Lookups of random cached customers",
        "",
        "| lookup | µs each | per second |",
        "| --- | ---: | ---: |",
    ]
    for name, micros in timings.items():
        lines.append(f"| {name} | {micros:.2f} | {1e6 / micros:,.0f} |")
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """The Markdown tables, from the JSON this script writes."""
    return report(data["memory"], data["microseconds_per_lookup"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer customers and rounds")
    args = parser.parse_args(argv)
    n, rounds, per_round, requests = (
        (10_000, 3, 5_000, 1_000) if args.quick else (100_000, 15, 50_000, 5_000)
    )
    pipeline, plugin, ids, memory = fill(n)
    memory["fill_rate"] = fill_rate(n)
    filled = plugin.calls
    timings = lookups(pipeline, ids, rounds, per_round, requests)
    memory["plugin_calls_during_lookups"] = plugin.calls - filled
    print(report(memory, timings))
    # BENCH_RESULTS: another folder for the results (the smoke test's, say).
    out = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "customers.json").write_text(
        json.dumps(
            {
                "quick": args.quick,
                "customers": n,
                "rounds": rounds,
                "lookups_per_round": per_round,
                "requests_per_round": requests,
                "memory": memory,
                "microseconds_per_lookup": timings,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
