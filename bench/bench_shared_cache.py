"""Shared cache on Redis: token calls for a fleet at a token expiry, and the cached path's cost.

**Fleet.** 8 worker processes (``bench/shared_cache_worker.py``) act as one customer against
``FakePlatform``'s ``/v1/account``: each with 200 threads, then each with 200 asyncio tasks (over
25 clients per process: httpcore's pools are quadratic in waiting requests), then each with one
thread, which shows the refresh's own latency with little else to do. Their provider asks a token
endpoint that takes 50 ms (a thread per connection, so that calls made at once are answered in
parallel, as in scenario 2). Compared: every process on a ``RedisContextCache`` in one namespace
(*shared*, default settings) on one ``redis-server``, the same on a 3-primary Redis Cluster
(``cluster=True``), and each process on its own ``MemoryContextCache`` (*per-process*, the
default). Connections are opened beforehand; callers are made beforehand too, and every process
releases them at one wall-clock time. For each cache, a new pipeline (nothing cached) runs:

- *cold start*: the burst with nothing cached anywhere (once);
- *on expiry*: every process holds a context (its own, or the fleet's), the platform expires
  every token, and the burst finds it rejected (401); then asapp-auth refreshes and retries;
- *valid context*: the same burst with nothing to refresh, on the cache that went last.

Reported: token-endpoint calls; *all served*, from the common release until every process had
its first 200; the wall time until the last answer of any process (medians over rounds, caches in
a shuffled order each round); the API's 401s; and failures in total (an exception, or a final
answer other than 200).

**Cached path.** One process: microseconds per request through ``httpx.MockTransport`` (sync and
async), interleaved rounds and medians as in scenario 1, for a pipeline on ``MemoryContextCache``
and on ``RedisContextCache`` with a fresh front copy (one server, and a cluster), beside raw httpx
with a static header. Then
what a request pays when its front copy has expired (``front_ttl``): the latency of one front miss
(``get_context`` after ``cache.clear()``, which clears only this process's copy: one read script,
unseal, adopt; on one server and on the cluster), back to back and after a few milliseconds of
quiet, beside a bare redis-py HGET
and a ``MemoryContextCache`` miss; how often a request pays it, measured with a short
``front_ttl`` at paced rates; and that worked out for the default ``front_ttl`` of 5 s.

    python bench/bench_shared_cache.py [--quick]

Needs ``redis-server`` and ``redis-cli`` on the PATH (a server and a cluster started on free ports
on 127.0.0.1, and stopped). Writes
bench/results/shared_cache.json and .md, and prints the Markdown. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx
import redis
from redis.cluster import RedisCluster

from asapp_auth import AuthContext, AuthPipeline, MemoryContextCache
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import FakePlatform, RedisClusterServer, RedisServer

# As in bench_stampede.py: httpcore's per-request ``import sniffio`` under asyncio, with sniffio
# not installed, scans sys.path each time. Fail it at once; httpcore then assumes asyncio.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

WORKER = Path(__file__).with_name("shared_cache_worker.py")
TOKEN_DELAY = 0.05
CUSTOMER = "alice"
SHARED, PER_PROCESS = "shared (RedisContextCache)", "per-process (MemoryContextCache)"
CLUSTER = "shared on a 3-primary cluster (RedisContextCache, cluster=True)"
COLD, EXPIRY, VALID = "cold start", "on expiry", "valid context, no refresh"
EITHER = "either cache (in turn)"
URL = "https://api.chat.example/v1/account"
TOKEN = "tok-bench-" + "x" * 30
RAW, MEMORY, REDIS, REDIS_CLUSTER = (
    "raw httpx, static header",
    "MemoryContextCache",
    "RedisContextCache, fresh front copy",
    "RedisContextCache on a cluster, fresh front copy",
)
FRONT_TTL = 5.0  # RedisContextCache's default
IDLE = 0.005  # quiet before a front miss, enough for Redis and its connection to go idle
SHARED_MISS = (
    "RedisContextCache front miss: get_context after cache.clear() (read script, unseal, adopt)"
)
CLUSTER_MISS = "RedisContextCache on a cluster, front miss (the same)"
RATES = [10, 100, 1_000, 10_000]  # requests per second per process, for the worked figures


class TokenEndpoint:
    """``POST``: a platform token for the customer in the JSON body, after ``TOKEN_DELAY``.

    A thread per connection, so that calls made at once are answered in parallel (the fake
    platform's own routes share a small pool). ``GET`` answers at once and is not counted: the
    workers open their connection with it.
    """

    def __init__(self, platform: FakePlatform) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # or delayed ACKs add 40 ms to every call

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(TOKEN_DELAY)
                with endpoint._lock:
                    endpoint.calls += 1
                token = platform.issue_token(json.loads(body)["customer"], 3600)
                self.reply({"token": token, "expires_in": 3600})

            def do_GET(self) -> None:
                self.reply({})

            def reply(self, document: dict[str, Any]) -> None:
                payload = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/mint"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- the fleet ------------------------------------------------------------------------------------


class Fleet:
    """``processes`` workers, each answering one JSON line per command."""

    def __init__(self, processes: int, options: dict[str, Any]) -> None:
        self.logs: list[IO[str]] = []
        self.workers: list[subprocess.Popen[str]] = []
        for _ in range(processes):
            log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by close()
            self.logs.append(log)
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), json.dumps(options)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            )
        self.answers()  # each one's {"ready": true}

    def answers(self) -> list[dict[str, Any]]:
        found = []
        for worker, log in zip(self.workers, self.logs, strict=True):
            assert worker.stdout is not None
            line = worker.stdout.readline()
            if not line:
                log.seek(0)
                raise RuntimeError(f"a worker stopped:\n{log.read()[-3000:]}")
            found.append(json.loads(line))
        return found

    def send(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        for worker in self.workers:
            assert worker.stdin is not None
            worker.stdin.write(json.dumps(command) + "\n")
            worker.stdin.flush()
        return self.answers()

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                assert worker.stdin is not None
                try:
                    worker.stdin.write('{"op": "quit"}\n')
                    worker.stdin.close()
                except OSError:
                    pass
        for worker in self.workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for log in self.logs:
            log.close()


def burst(
    fleet: Fleet,
    platform: FakePlatform,
    endpoint: TokenEndpoint,
    plan: dict[str, Any],
    backend: str,
) -> dict[str, Any]:
    """Release every worker's callers at one wall-clock time; what the burst took and asked."""
    endpoint.calls = 0
    platform.received.clear()
    # Every worker has its callers made and waiting by then, even on two busy cores.
    start_at = time.time() + 0.1 + 0.0015 * plan["callers"]
    answers = fleet.send({"op": "burst", "backend": backend, "start_at": start_at, **plan})
    statuses: Counter[str] = Counter()
    for answer in answers:
        statuses.update(answer["statuses"])
    errors = [error for answer in answers for error in answer["errors"]]
    error_count = sum(answer["error_count"] for answer in answers)
    return {
        "backend": backend,
        "token_calls": endpoint.calls,
        "provider_calls": sum(answer["asked"] for answer in answers),
        "wall": max(answer["last"] for answer in answers) - start_at,
        # When the slowest process had its first 200: every process then had a good context.
        "all_served": max(answer["first_ok"] for answer in answers) - start_at,
        # The platform answers 401 to a request whose token it does not take.
        "api_401": sum(r.customer_id is None for r in list(platform.received)),
        "late": max(answer["released"] for answer in answers) - start_at,
        "exceptions": error_count,
        "failures": error_count + sum(n for status, n in statuses.items() if status != "200"),
        "answers": dict(statuses),
        "errors": errors[:5],
    }


Samples = dict[str, dict[str, dict[str, list[dict[str, Any]]]]]


def run_fleet(
    processes: int, plans: dict[str, dict[str, Any]], rounds: int, redis_url: str, cluster_url: str
) -> Samples:
    """Per plan (threads or tasks, how many callers): each cache's cold start once, then rounds
    of each cache on expiry (in a shuffled order) and one burst with no refresh to do."""
    samples: Samples = {
        label: {
            COLD: {SHARED: [], CLUSTER: [], PER_PROCESS: []},
            EXPIRY: {SHARED: [], CLUSTER: [], PER_PROCESS: []},
            VALID: {EITHER: []},
        }
        for label in plans
    }
    backends = {SHARED: "redis", CLUSTER: "redis-cluster", PER_PROCESS: "memory"}
    with FakePlatform() as platform:
        endpoint = TokenEndpoint(platform)
        options = {
            "platform": platform.url,
            "mint": endpoint.url,
            "redis": redis_url,
            "cluster": cluster_url,
            "key": generate_key(),
            "customer": CUSTOMER,
            "callers": max(plan["callers"] for plan in plans.values()),
        }
        fleet = Fleet(processes, options)
        try:
            for number, (label, plan) in enumerate(plans.items()):
                found = samples[label]
                namespace = f"bench-{os.getpid()}-{number}"
                for backend in backends.values():
                    fleet.send({"op": "pipeline", "backend": backend, "namespace": namespace})
                # Each process fetches its own context (per-process), or the fleet's (shared).
                for cache in random.sample(list(backends), len(backends)):
                    found[COLD][cache].append(
                        burst(fleet, platform, endpoint, plan, backends[cache])
                    )
                for _ in range(rounds):
                    for cache in random.sample(list(backends), len(backends)):
                        platform.expire()  # every token: each process's context is rejected
                        found[EXPIRY][cache].append(
                            burst(fleet, platform, endpoint, plan, backends[cache])
                        )
                    # The same burst again, with nothing to refresh: on the cache that went last,
                    # whose context nothing has expired since.
                    found[VALID][EITHER].append(
                        burst(fleet, platform, endpoint, plan, backends[cache])
                    )
        finally:
            fleet.close()
            endpoint.close()
    return samples


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [s["token_calls"] for s in samples]
    answers: Counter[str] = Counter()
    for sample in samples:
        answers.update(sample["answers"])
    return {
        "token_calls": statistics.median(calls),
        "token_calls_min": min(calls),
        "token_calls_max": max(calls),
        "provider_calls": statistics.median(s["provider_calls"] for s in samples),
        "wall": statistics.median(s["wall"] for s in samples),
        "wall_min": min(s["wall"] for s in samples),
        "wall_max": max(s["wall"] for s in samples),
        "all_served": statistics.median(s["all_served"] for s in samples),
        "api_401": statistics.median(s["api_401"] for s in samples),
        "late_max": max(s["late"] for s in samples),
        "failures": sum(s["failures"] for s in samples),
        "answers": {k: v / len(samples) for k, v in sorted(answers.items())},
        "samples": samples,
    }


# -- the cached path ------------------------------------------------------------------------------


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"{}")


def make_pipeline(cache: MemoryContextCache | None) -> AuthPipeline:
    def provide(needs_refresh: bool) -> AuthContext:
        return AuthContext({"Auth": {"Token": TOKEN}}, expires_in=3600)

    provide.cache_scope = "bench"  # type: ignore[attr-defined]  # an app's own provider shares
    pipeline = AuthPipeline(origins=["https://api.chat.example"], cache=cache)
    pipeline.load(CUSTOMER, provide)
    return pipeline


def measure(
    names: list[str], run: Callable[[str, int], float], rounds: int, per_round: int
) -> dict[str, float]:
    """Median µs per request for each name, over rounds run in a shuffled order each time."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in random.sample(names, len(names)):
            samples[name].append(run(name, per_round) / per_round * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def cached_path(
    shared: AuthPipeline, on_cluster: AuthPipeline, rounds: int, per_round: int
) -> dict[str, dict[str, float]]:
    auths: dict[str, AuthPipeline | None] = {
        RAW: None,
        MEMORY: make_pipeline(MemoryContextCache()),
        REDIS: shared,
        REDIS_CLUSTER: on_cluster,
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    transport = httpx.MockTransport(ok)
    clients = {
        name: httpx.Client(transport=transport, auth=auth, headers=headers if auth is None else {})
        for name, auth in auths.items()
    }
    for client in clients.values():
        client.get(URL)

    def run_sync(name: str, n: int) -> float:
        client = clients[name]
        started = time.perf_counter()
        for _ in range(n):
            client.get(URL)
        return time.perf_counter() - started

    results = {"sync, httpx.MockTransport": measure(list(auths), run_sync, rounds, per_round)}

    async def run_async() -> dict[str, float]:
        aclients = {
            name: httpx.AsyncClient(
                transport=transport, auth=auth, headers=headers if auth is None else {}
            )
            for name, auth in auths.items()
        }
        for client in aclients.values():
            await client.get(URL)
        samples: dict[str, list[float]] = {name: [] for name in auths}
        for _ in range(rounds):
            for name in random.sample(list(auths), len(auths)):
                client = aclients[name]
                started = time.perf_counter()
                for _ in range(per_round):
                    await client.get(URL)
                samples[name].append((time.perf_counter() - started) / per_round * 1e6)
        for client in aclients.values():
            await client.aclose()
        return {name: statistics.median(values) for name, values in samples.items()}

    results["async, httpx.MockTransport"] = asyncio.run(run_async())
    for client in clients.values():
        client.close()
    return results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def front_miss(
    redis_url: str, cluster_url: str, key: str, namespace: str, *, times: int, idle_times: int
) -> dict[str, dict[str, Any]]:
    """Latency of a request's context when this process's copy is gone, in µs: back to back,
    and after ``IDLE`` seconds of quiet, as a read once per ``front_ttl`` finds Redis and its
    connection (waking both up costs as much again as the read on this machine)."""
    cache = RedisContextCache(redis_url, keys=[key], namespace=namespace, front_ttl=3600)
    shared = make_pipeline(cache)
    shared.get_context()  # stored in Redis, listening for notices
    cluster_cache = RedisContextCache(
        cluster_url, keys=[key], namespace=namespace, front_ttl=3600, cluster=True
    )
    on_cluster = make_pipeline(cluster_cache)
    on_cluster.get_context()
    memory_cache = MemoryContextCache()
    memory = make_pipeline(memory_cache)
    client = redis.Redis.from_url(redis_url)
    stored = client.keys(f"{namespace}:*")[0]
    cluster_client = RedisCluster.from_url(cluster_url)
    reads = cache.stats["reads"], cluster_cache.stats["reads"]

    def miss(cache: MemoryContextCache, pipeline: AuthPipeline) -> Callable[[], object]:
        def run() -> None:
            cache.clear()
            pipeline.get_context()

        return run

    ways: dict[str, Callable[[], object]] = {
        SHARED_MISS: miss(cache, shared),
        "redis-py HGET of the same entry alone": lambda: client.hget(stored, "v"),
        CLUSTER_MISS: miss(cluster_cache, on_cluster),
        "redis-py RedisCluster HGET of the same entry alone": lambda: cluster_client.hget(
            stored, "v"
        ),
        "MemoryContextCache miss: get_context after cache.clear() (provider answers at once)": (
            miss(memory_cache, memory)
        ),
    }
    samples: dict[str, dict[str, list[float]]] = {name: {"busy": [], "idle": []} for name in ways}
    for n, idle in ((times, 0.0), (idle_times, IDLE)):
        for _ in range(n):
            for name in random.sample(list(ways), len(ways)):
                if idle:
                    time.sleep(idle)
                started = time.perf_counter()
                ways[name]()
                samples[name]["idle" if idle else "busy"].append(
                    (time.perf_counter() - started) * 1e6
                )
    for each, before in zip((cache, cluster_cache), reads, strict=True):
        assert each.stats["reads"] - before == times + idle_times, "a front miss reads once"
        assert each.stats["produced"] == 1, "no front miss asked the provider"
        each.close()
    client.close()
    cluster_client.close()
    return {
        name: {
            f"{how}_{figure}": value
            for how, values in found.items()
            for figure, value in (
                ("median_us", statistics.median(values)),
                ("p90_us", percentile(values, 0.9)),
                ("samples", len(values)),
            )
        }
        for name, found in samples.items()
    }


def front_ttl_reads(
    redis_url: str, key: str, namespace: str, front_ttl: float, duration: float
) -> list[dict[str, Any]]:
    """Requests at paced rates through one pipeline: how many found their front copy expired
    and paid a Redis read, against the prediction of one per ``front_ttl``."""
    cache = RedisContextCache(redis_url, keys=[key], namespace=namespace, front_ttl=front_ttl)
    pipeline = make_pipeline(cache)
    found = []
    with httpx.Client(transport=httpx.MockTransport(ok), auth=pipeline) as client:
        client.get(URL)
        for rate in (100, 1000, None):
            interval = 0.0 if rate is None else 1.0 / rate
            paid: list[float] = []
            others: list[float] = []
            began = time.perf_counter()
            next_at = began
            while (now := time.perf_counter()) < began + duration:
                if now < next_at:
                    time.sleep(next_at - now)
                next_at += interval
                reads = cache.stats["reads"]
                started = time.perf_counter()
                client.get(URL)
                took = (time.perf_counter() - started) * 1e6
                (paid if cache.stats["reads"] != reads else others).append(took)
            took_all = time.perf_counter() - began
            requests = len(paid) + len(others)
            achieved = requests / took_all
            found.append(
                {
                    "rate": rate,
                    "achieved_rate": achieved,
                    "requests": requests,
                    "paid_a_read": len(paid),
                    "one_in": requests / len(paid) if paid else None,
                    "predicted_one_in": front_ttl * achieved,
                    "paid_median_us": statistics.median(paid) if paid else None,
                    "others_median_us": statistics.median(others),
                }
            )
    cache.close()
    return found


# -- report ---------------------------------------------------------------------------------------


def fmt_calls(summary: dict[str, Any]) -> str:
    low, high = summary["token_calls_min"], summary["token_calls_max"]
    return f"{low:,}" if low == high else f"{summary['token_calls']:g} (min {low}, max {high})"


def fleet_table(title: str, results: dict[str, dict[str, dict[str, Any]]]) -> str:
    floor = results[VALID][EITHER]["wall"]
    lines = [
        f"### {title}",
        "",
        "| case | cache | runs | token-endpoint calls | all served ms | wall ms | runs' range ms "
        "| over no refresh ms | API 401s | failures | API answers per run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case, caches in results.items():
        for cache, s in caches.items():
            answers = ", ".join(f"{n:,g} x {status}" for status, n in s["answers"].items())
            over = "" if case == VALID else f"{(s['wall'] - floor) * 1e3:+,.0f}"
            lines.append(
                f"| {case} | {cache} | {len(s['samples'])} | {fmt_calls(s)} "
                f"| {s['all_served'] * 1e3:,.0f} | {s['wall'] * 1e3:,.0f} "
                f"| {s['wall_min'] * 1e3:,.0f}-{s['wall_max'] * 1e3:,.0f} | {over} "
                f"| {s['api_401']:,g} | {s['failures']:,} | {answers} |"
            )
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """The Markdown tables, from the JSON this script writes."""
    processes = data["processes"]
    parts = [
        f"*Fleet*: {processes} processes, each with the callers the title says, as one customer, "
        "all released at one wall-clock time; token endpoint "
        f"{data['token_delay'] * 1e3:.0f} ms. *Cold "
        "start*: nothing cached anywhere. *On expiry*: every process holds a context (its own, "
        "or the fleet's) that the platform has just expired: a caller that sends it gets a 401 "
        "(*API 401s*), and asapp-auth refreshes and retries. *Valid context*: the same burst "
        "with nothing to refresh, what the requests alone cost here. *All served*: from the "
        "common time until every process had its first 200 (so a good context). *Wall*: until "
        "the last answer of any process; every process shares the machine's cores with the "
        "servers, so the wall time is mostly CPU and noisy, and the token calls are what tell "
        "the caches apart. Medians over runs; failures (exceptions and final answers other "
        "than 200) over every run. The latest any worker released its callers was "
        f"{data['late_max'] * 1e3:.0f} ms after the common time."
    ]
    for label, results in data["fleet"].items():
        plan = data["fleet_plans"][label]
        kind = "threads" if plan["mode"] == "threads" else "asyncio tasks"
        if plan["callers"] == 1:
            title = (
                f"{processes} processes x 1 thread: the refresh's own latency, little else to do"
            )
        else:
            title = f"{processes} processes x {plan['callers']} {kind} (over 25 clients each)"
        parts.append(fleet_table(title, results))
    path = data["cached_path"]
    lines = [
        f"### Cached path, one process (µs per request; medians over {data['path_rounds']} "
        f"interleaved rounds of {data['path_per_round']:,})",
        "",
        "| variant | sync | over Memory | async | over Memory |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    sync, asynchronous = path["sync, httpx.MockTransport"], path["async, httpx.MockTransport"]
    for name in (RAW, MEMORY, REDIS, REDIS_CLUSTER):
        lines.append(
            f"| {name} | {sync[name]:.1f} | {sync[name] - sync[MEMORY]:+.1f} "
            f"| {asynchronous[name]:.1f} | {asynchronous[name] - asynchronous[MEMORY]:+.1f} |"
        )
    parts.append("\n".join(lines))
    lines = [
        f"### A front miss, one process (µs; {data['miss_times']:,} back to back and "
        f"{data['miss_idle_times']:,} after {data['idle'] * 1e3:g} ms of quiet, of each, "
        "interleaved)",
        "",
        "| what | back to back: median | p90 | after quiet: median | p90 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in data["front_miss"].items():
        lines.append(
            f"| {name} | {s['busy_median_us']:.0f} | {s['busy_p90_us']:.0f} "
            f"| {s['idle_median_us']:.0f} | {s['idle_p90_us']:.0f} |"
        )
    parts.append("\n".join(lines))
    measured = data["front_ttl_measured"]
    lines = [
        f"### How often a request pays a Redis read: measured with front_ttl="
        f"{measured['front_ttl']:g} s, {measured['duration']:g} s per rate, one thread",
        "",
        "| rate asked | achieved req/s | requests | paid a read | 1 request in | predicted 1 in "
        "| µs, those that paid | µs, the others | paid extra µs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in measured["runs"]:
        rate = "unpaced" if run["rate"] is None else f"{run['rate']:,}/s"
        one_in = "-" if run["one_in"] is None else f"{run['one_in']:,.0f}"
        paid = extra = "-"
        if run["paid_median_us"] is not None:
            paid = f"{run['paid_median_us']:.0f}"
            extra = f"{run['paid_median_us'] - run['others_median_us']:+.0f}"
        lines.append(
            f"| {rate} | {run['achieved_rate']:,.0f} | {run['requests']:,} "
            f"| {run['paid_a_read']:,} | {one_in} | {run['predicted_one_in']:,.0f} | {paid} "
            f"| {run['others_median_us']:.0f} | {extra} |"
        )
    parts.append("\n".join(lines))
    miss = data["front_miss"][SHARED_MISS]["idle_median_us"]
    lines = [
        f"### Worked out for front_ttl={data['front_ttl']:g} s (the default): one read per "
        f"process and customer every {data['front_ttl']:g} s, {miss:.0f} µs each (a front miss "
        "after quiet)",
        "",
        "| requests/s per process and customer | 1 request in | amortised µs per request |",
        "| ---: | ---: | ---: |",
    ]
    for row in data["front_ttl_worked"]:
        lines.append(f"| {row['rate']:,} | {row['one_in']:,.0f} | {row['amortised_us']:.3f} |")
    parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller fleet, fewer rounds")
    args = parser.parse_args(argv)
    if args.quick:
        processes, callers, rounds = 3, 20, 1
        path_rounds, path_per_round, ttl_duration = 3, 200, 0.3
        miss_times, miss_idle_times = 100, 30
    else:
        processes, callers, rounds = 8, 200, 3
        path_rounds, path_per_round, ttl_duration = 6, 1000, 1.25
        miss_times, miss_idle_times = 1000, 300
    plans = {
        "threads": {"mode": "threads", "callers": callers},
        "asyncio": {"mode": "asyncio", "callers": callers},
        "threads, one caller": {"mode": "threads", "callers": 1},
    }
    server, cluster = RedisServer(), RedisClusterServer()
    try:
        server.start()
        cluster.start()
    except FileNotFoundError as exc:
        server.close()
        cluster.close()
        raise SystemExit(str(exc)) from None
    try:
        key, namespace = generate_key(), f"bench-path-{os.getpid()}"
        # A front copy that outlives the measurement: each request takes the cached path.
        caches = [
            RedisContextCache(server.url, keys=[key], namespace=namespace, front_ttl=3600),
            RedisContextCache(
                cluster.url, keys=[key], namespace=namespace, front_ttl=3600, cluster=True
            ),
        ]
        shared, on_cluster = (make_pipeline(cache) for cache in caches)
        for pipeline in (shared, on_cluster):
            pipeline.get_context()
        reads = [cache.stats["reads"] for cache in caches]
        path = cached_path(shared, on_cluster, path_rounds, path_per_round)
        assert [c.stats["reads"] for c in caches] == reads, "the cached path read no Redis"
        for cache in caches:
            cache.close()
        miss = front_miss(
            server.url,
            cluster.url,
            key,
            namespace + "-miss",
            times=miss_times,
            idle_times=miss_idle_times,
        )
        ttl_runs = front_ttl_reads(server.url, key, namespace + "-ttl", 0.25, ttl_duration)
        fleet = run_fleet(processes, plans, rounds, server.url, cluster.url)
    finally:
        server.close()
        cluster.close()
    miss_us = miss[SHARED_MISS]["idle_median_us"]
    summaries = {
        mode: {
            case: {cache: summarise(samples) for cache, samples in caches.items()}
            for case, caches in cases.items()
        }
        for mode, cases in fleet.items()
    }
    data = {
        "quick": args.quick,
        "processes": processes,
        "callers": callers,
        "fleet_plans": plans,
        "rounds": rounds,
        "token_delay": TOKEN_DELAY,
        "late_max": max(
            s["late_max"]
            for cases in summaries.values()
            for caches in cases.values()
            for s in caches.values()
        ),
        "fleet": summaries,
        "path_rounds": path_rounds,
        "path_per_round": path_per_round,
        "cached_path": path,
        "miss_times": miss_times,
        "miss_idle_times": miss_idle_times,
        "idle": IDLE,
        "front_miss": miss,
        "front_ttl_measured": {"front_ttl": 0.25, "duration": ttl_duration, "runs": ttl_runs},
        "front_ttl": FRONT_TTL,
        "front_ttl_worked": [
            {"rate": rate, "one_in": FRONT_TTL * rate, "amortised_us": miss_us / (FRONT_TTL * rate)}
            for rate in RATES
        ],
    }
    text = markdown(data)
    print(text)
    # BENCH_RESULTS: another folder for the results (the smoke test's, say).
    out = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "shared_cache.json").write_text(json.dumps(data, indent=2))
    (out / "shared_cache.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
