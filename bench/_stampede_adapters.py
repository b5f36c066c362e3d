"""The refresh stampede on every adapter: one section of ``bench_stampede.py``, in a process of
its own (httpx2 must be importable here, and ``bench_stampede``'s own process keeps it out).

For each adapter, ``callers`` requests are released at once (threads on a ``threading.Barrier``
for a sync client, tasks on an ``asyncio.Event`` for an async one) onto a pipeline whose context
has just expired; its provider fetches a platform token from the 50 ms token endpoint. Every
client is made, and has one connection open, before the release: the wall time runs from the
release to the last answer. The floor is the same burst through the same client and pipeline
with a fresh context cached: what the burst costs with no refresh to do. Each round runs every
adapter's floor and stampede, in a shuffled order.

    python bench/_stampede_adapters.py --out FILE [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import requests
import requests.adapters
from _token_endpoint import TokenEndpoint

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth.aiohttp import AiohttpAuth
from asapp_auth.httpx2 import Httpx2Auth
from asapp_auth.requests import RequestsAuth
from asapp_auth.testing import FakePlatform

# httpcore 1 tries ``import sniffio`` for every request's locks under asyncio and this environment
# has none: fail that import at once (see bench_stampede.py).
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

SYNC = ["httpx", "httpx2", "requests"]
ASYNC = ["httpx async", "httpx2 async", "aiohttp"]
ADAPTERS = ["httpx", "httpx async", "httpx2", "httpx2 async", "requests", "aiohttp"]
# httpcore's async pool is quadratic in queued requests: httpx's tasks spread over this many
# AsyncClients, as in bench_stampede.py (aiohttp's connector has no such cost: one session).
ASYNC_CLIENTS = 25
# The priming token's lifetime: expired for the pipeline and the platform after a short sleep.
PRIMED_LIFETIME = 0.3
# Every client is plain HTTP: one SSL context for all, as each new one loads the CA bundle.
SSL = ssl.create_default_context()


def pipeline_for(endpoint: TokenEndpoint, platform: FakePlatform) -> tuple[AuthPipeline, Any]:
    """A pipeline whose provider asks the token endpoint, and the client it asks with."""
    tokens = httpx.Client(
        timeout=60, verify=SSL, limits=httpx.Limits(max_connections=8, max_keepalive_connections=8)
    )

    def provide(needs_refresh: bool) -> AuthContext:
        response = tokens.post(endpoint.url, data={"grant_type": "client_credentials"})
        response.raise_for_status()
        body = response.json()
        return AuthContext({"Auth": {"Token": body["access_token"]}}, expires_in=body["expires_in"])

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.load("service", provide)
    return pipeline, tokens


def sync_client(kind: str, pipeline: AuthPipeline, n: int) -> tuple[Callable[[str], int], Any]:
    """(one GET returning its status, close) for a client shared by ``n`` threads."""
    if kind == "requests":
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=n))
        session.auth = RequestsAuth(pipeline)
        return (lambda url: session.get(url, timeout=60).status_code), session.close
    module: Any = httpx if kind == "httpx" else httpx2
    auth = pipeline if kind == "httpx" else Httpx2Auth(pipeline)
    # Keep-alive as large as the pool: httpcore 1.0.9's pool can fail a request otherwise
    # (encode/httpcore#1110; see bench_pool.py).
    limits = module.Limits(max_connections=n, max_keepalive_connections=n)
    client = module.Client(auth=auth, timeout=60, verify=SSL, limits=limits)
    return (lambda url: client.get(url).status_code), client.close


def threads_together(n: int, work: Callable[[], object]) -> tuple[float, list[object]]:
    """``work`` in ``n`` threads released at once: the time from release to the last end."""
    started: list[float] = []
    barrier = threading.Barrier(n, action=lambda: started.append(time.perf_counter()))
    results: list[object] = [None] * n
    ends = [0.0] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as exc:
            results[i] = type(exc).__name__
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(ends) - started[0], results


async def async_clients(kind: str, pipeline: AuthPipeline, n: int) -> tuple[list[Any], Any]:
    """(clients, one GET on a client returning its status) for ``n`` tasks."""
    if kind == "aiohttp":
        connector = aiohttp.TCPConnector(limit=n, ssl=SSL)
        session = aiohttp.ClientSession(connector=connector, middlewares=(AiohttpAuth(pipeline),))

        async def get_aiohttp(client: Any, url: str) -> int:
            async with client.get(url) as response:
                await response.read()
                return int(response.status)

        return [session], get_aiohttp
    module: Any = httpx if kind == "httpx async" else httpx2
    auth = pipeline if kind == "httpx async" else Httpx2Auth(pipeline)
    size = -(-n // ASYNC_CLIENTS) + 1
    limits = module.Limits(max_connections=size, max_keepalive_connections=size)
    count = min(n, ASYNC_CLIENTS)
    clients = [
        module.AsyncClient(auth=auth, timeout=60, verify=SSL, limits=limits) for _ in range(count)
    ]

    async def get_httpx(client: Any, url: str) -> int:
        return int((await client.get(url)).status_code)

    return clients, get_httpx


async def tasks_together(
    n: int, clients: list[Any], work: Callable[[Any], Awaitable[object]]
) -> tuple[float, list[object]]:
    """``work`` in ``n`` tasks released by one event, clients shared round-robin."""
    go = asyncio.Event()
    ends = [0.0] * n
    results: list[object] = [None] * n

    async def one(i: int) -> None:
        await go.wait()
        try:
            results[i] = await work(clients[i % len(clients)])
        except Exception as exc:
            results[i] = type(exc).__name__
        ends[i] = time.perf_counter()

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(0.01)  # every task is waiting on the event
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return max(ends) - started, results


def burst(
    kind: str, endpoint: TokenEndpoint, platform: FakePlatform, n: int, expired: bool
) -> dict[str, Any]:
    """One burst of ``n`` GETs: on an expired context when ``expired``, else on a fresh one."""
    pipeline, tokens = pipeline_for(endpoint, platform)
    api = f"{platform.url}/v1/account"
    endpoint.reset(lifetime=PRIMED_LIFETIME if expired else 3600)
    try:
        if kind in SYNC:
            get, close = sync_client(kind, pipeline, n)
            try:
                if get(api) != 200:
                    raise RuntimeError(f"{kind}: priming failed")
                if expired:
                    time.sleep(PRIMED_LIFETIME + 0.1)  # expired for the pipeline and platform
                endpoint.reset(lifetime=3600)
                wall, results = threads_together(n, lambda: get(api))
            finally:
                close()
        else:

            async def main() -> tuple[float, list[object]]:
                clients, get_on = await async_clients(kind, pipeline, n)
                try:
                    if await get_on(clients[0], api) != 200:
                        raise RuntimeError(f"{kind}: priming failed")
                    if expired:
                        await asyncio.sleep(PRIMED_LIFETIME + 0.1)
                    endpoint.reset(lifetime=3600)
                    return await tasks_together(n, clients, lambda c: get_on(c, api))
                finally:
                    for client in clients:
                        await (client.close() if kind == "aiohttp" else client.aclose())

            wall, results = asyncio.run(main())
    finally:
        tokens.close()
    return {"calls": endpoint.calls, "wall": wall, "answers": dict(Counter(map(str, results)))}


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [s["calls"] for s in samples]
    answers: Counter[str] = Counter()
    for sample in samples:
        answers.update(sample["answers"])
    return {
        "calls": statistics.median(calls),
        "calls_min": min(calls),
        "calls_max": max(calls),
        "wall": statistics.median(s["wall"] for s in samples),
        "answers": {k: v / len(samples) for k, v in sorted(answers.items())},
        "samples": samples,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    threads, tasks, rounds = (10, 50, 1) if args.quick else (200, 1000, 3)
    callers = {kind: tasks if kind in ASYNC else threads for kind in ADAPTERS}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        kind: {"floor": [], "stampede": []} for kind in ADAPTERS
    }
    with FakePlatform() as platform:
        endpoint = TokenEndpoint(platform, 0.05)
        try:
            for _ in range(rounds):
                runs = [(kind, expired) for kind in ADAPTERS for expired in (False, True)]
                for kind, expired in random.sample(runs, len(runs)):
                    figures = burst(kind, endpoint, platform, callers[kind], expired)
                    samples[kind]["stampede" if expired else "floor"].append(figures)
        finally:
            endpoint.close()
    adapters = {
        kind: {
            "callers": callers[kind],
            "concurrency": "tasks" if kind in ASYNC else "threads",
            "floor": summarise(runs["floor"]),
            "stampede": summarise(runs["stampede"]),
        }
        for kind, runs in samples.items()
    }
    data = {
        "threads": threads,
        "tasks": tasks,
        "rounds": rounds,
        "async_clients": ASYNC_CLIENTS,
        "adapters": adapters,
    }
    args.out.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
