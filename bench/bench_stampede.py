"""Refresh stampede: many callers find the same token expired at once; how many refresh it?

200 threads, and separately 1,000 asyncio tasks (spread over 25 ``AsyncClient``s, as httpcore's
async pool is quadratic in queued requests), are released together (a ``threading.Barrier``, an
``asyncio.Event``) onto a client whose token has expired. Each sends one GET to an API that checks
the bearer token; the token endpoint takes 50 ms. Compared: asapp-auth (an ``AuthPipeline`` whose
context provider calls the token endpoint with httpx), httpx-auth's ``OAuth2ClientCredentials`` and
authlib's ``OAuth2Client`` / ``AsyncOAuth2Client`` (client credentials, refreshed by
``ensure_active_token``).

Both endpoints are real HTTP servers on 127.0.0.1: the API is ``FakePlatform``'s ``/v1/account``
(401 for an unknown or expired token); the token endpoint is a thread-per-connection server that
issues platform tokens, so that callers that do not share one refresh all get served in parallel
rather than queueing behind ``FakePlatform``'s small worker pool. Before each run every client gets
a 0.3-second token (and, with threads, opens its connections: httpcore's async pool checks every
idle connection on every pass, so warm pools make the asyncio runs slower, not steadier); the run
starts once that token has expired for the client and the platform. A floor row sends the same
burst with a valid static token: what the API round trips cost with no refresh to do.

Reported per library, as the median over rounds: token-endpoint calls; the wall time from release
to the last answer; *one caller*, the same run with a single caller, measured the same way (one
token round trip and one API call, through that library); the wall time over one caller, against
the target of 1.5x; the wall time over the floor's (what the refresh added to the burst); and the
API's answers.

Then every adapter (httpx and httpx2, sync and async; requests; aiohttp), in a process of its own
that has httpx2 (``_stampede_adapters.py``): the same burst, 200 threads or 1,000 tasks, through
that adapter's own client onto an expired context, beside the same burst on a fresh one (its
floor): token calls, and wall time over the floor.

    python bench/bench_stampede.py [--quick]

Writes bench/results/stampede.json and prints a Markdown table. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _httpx_only  # noqa: F401  (first: authlib must bind to httpx, not httpx2)
import httpx
import httpx_auth

with warnings.catch_warnings():
    import authlib.deprecate  # noqa: F401  (it sets "always" for its warnings: filter after)

    # authlib warns on import that its httpx support moves to "httpx2".
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

from _token_endpoint import TokenEndpoint

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth.testing import FakePlatform

TOKEN_DELAY = 0.05
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
ASYNC_CLIENTS = 25
# httpcore tries ``import sniffio`` for every request's locks under asyncio; this environment
# has no sniffio (anyio 4 no longer needs it), and a failed import scans sys.path each time,
# costing every library alike ~0.3 ms a request. Fail it at once; httpcore then assumes asyncio.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

# Every client is plain HTTP: one SSL context for all, as each new one loads the CA bundle.
SSL = ssl.create_default_context()
TIMEOUT = httpx.Timeout(60.0)
# A token this short-lived is expired for every library (httpx-auth and authlib count 30 and 60
# seconds off a token's lifetime) once it has expired for asapp-auth and the platform.
PRIMED_LIFETIME = 0.3
FLOOR = "floor: raw httpx, valid static token"
# The whole burst answered within this many times what one caller takes.
TARGET = 1.5


@dataclass
class Watch:
    """Records token requests sent by a synchronous httpx client from the event loop's thread."""

    loop_thread: int | None = None
    blocking: int = 0

    def hook(self, request: httpx.Request) -> None:
        if threading.get_ident() == self.loop_thread:
            self.blocking += 1


def limits(n: int) -> httpx.Limits:
    return httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)


def token_client(watch: Watch | None = None) -> httpx.Client:
    hooks = {"request": [watch.hook]} if watch else {}
    return httpx.Client(timeout=TIMEOUT, verify=SSL, limits=limits(8), event_hooks=hooks)


def asapp_pipeline(endpoint: TokenEndpoint, origin: str, client: httpx.Client) -> AuthPipeline:
    def provide(needs_refresh: bool) -> AuthContext:
        response = client.post(
            endpoint.url,
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        response.raise_for_status()
        body = response.json()
        return AuthContext({"Auth": {"Token": body["access_token"]}}, expires_in=body["expires_in"])

    pipeline = AuthPipeline(origins=[origin])
    pipeline.load("service", provide)
    return pipeline


# -- threads --------------------------------------------------------------------------------------


@dataclass
class SyncCase:
    """One library's sync setup: ``warm`` opens a connection without auth, ``work`` is one call."""

    warm: Callable[[], object]
    prime: Callable[[], object]
    work: Callable[[], int]
    close: Callable[[], object]


def sync_case(name: str, endpoint: TokenEndpoint, platform: FakePlatform, n: int) -> SyncCase:
    api = f"{platform.url}/v1/account"
    public = f"{platform.url}/public"
    tokens = token_client()
    if name == FLOOR:
        valid = {"Authorization": f"Bearer {platform.issue_token('service', 3600)}"}
        client = httpx.Client(headers=valid, timeout=TIMEOUT, verify=SSL, limits=limits(n))
    elif name == "asapp-auth":
        pipeline = asapp_pipeline(endpoint, platform.url, tokens)
        client = httpx.Client(auth=pipeline, timeout=TIMEOUT, verify=SSL, limits=limits(n))
    elif name == "httpx-auth":
        httpx_auth.OAuth2.token_cache.clear()  # one cache for the process
        auth = httpx_auth.OAuth2ClientCredentials(
            endpoint.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=tokens
        )
        client = httpx.Client(auth=auth, timeout=TIMEOUT, verify=SSL, limits=limits(n))
    else:
        tokens.close()
        authlib = OAuth2Client(
            CLIENT_ID,
            CLIENT_SECRET,
            token_endpoint=endpoint.url,
            grant_type="client_credentials",
            timeout=TIMEOUT,
            verify=SSL,
            limits=limits(n),
        )
        return SyncCase(
            warm=lambda: authlib.request("GET", public, withhold_token=True),
            prime=authlib.fetch_token,
            work=lambda: authlib.get(api).status_code,
            close=authlib.close,
        )

    def close() -> None:
        client.close()
        tokens.close()

    return SyncCase(
        warm=lambda: client.get(public, auth=None),
        prime=lambda: name == FLOOR or client.get(api),
        work=lambda: client.get(api).status_code,
        close=close,
    )


def together(n: int, work: Callable[[], object]) -> tuple[float, list[object]]:
    """Run ``work`` in ``n`` threads released at once; the time from release to the last end."""
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


def run_sync(name: str, endpoint: TokenEndpoint, platform: FakePlatform, n: int) -> dict[str, Any]:
    case = sync_case(name, endpoint, platform, n)
    try:
        _, opened = together(n, case.warm)
        if any(getattr(response, "status_code", None) != 200 for response in opened):
            raise RuntimeError(f"{name}: opening connections failed: {Counter(map(str, opened))}")
        endpoint.reset(lifetime=PRIMED_LIFETIME)
        case.prime()
        time.sleep(PRIMED_LIFETIME + 0.1)  # expired for the client and for the platform
        endpoint.reset(lifetime=3600)
        wall, results = together(n, case.work)
        return {"calls": endpoint.calls, "wall": wall, "answers": Counter(map(str, results))}
    finally:
        case.close()


# -- asyncio tasks --------------------------------------------------------------------------------


@dataclass
class AsyncCase:
    clients: list[Any]
    prime: Callable[[], Awaitable[object]]
    work: Callable[[Any], Awaitable[int]]
    closers: list[Callable[[], object]] = field(default_factory=list)


def async_case(
    name: str, endpoint: TokenEndpoint, platform: FakePlatform, n: int, watch: Watch
) -> AsyncCase:
    api = f"{platform.url}/v1/account"
    per_client = -(-n // ASYNC_CLIENTS)
    if name.startswith("authlib"):
        count, size = (1, n) if "one shared" in name else (ASYNC_CLIENTS, per_client)
        authlib = [
            AsyncOAuth2Client(
                CLIENT_ID,
                CLIENT_SECRET,
                token_endpoint=endpoint.url,
                grant_type="client_credentials",
                timeout=TIMEOUT,
                verify=SSL,
                limits=limits(size),
            )
            for _ in range(count)
        ]

        async def prime_authlib() -> None:
            await asyncio.gather(*(client.fetch_token() for client in authlib))

        async def work_authlib(client: Any) -> int:
            return (await client.get(api)).status_code

        return AsyncCase(authlib, prime_authlib, work_authlib)

    tokens = token_client(watch)
    auth: httpx.Auth | None = None
    headers = {}
    if name == FLOOR:
        headers["Authorization"] = f"Bearer {platform.issue_token('service', 3600)}"
    elif name == "asapp-auth":
        auth = asapp_pipeline(endpoint, platform.url, tokens)
    else:
        httpx_auth.OAuth2.token_cache.clear()
        auth = httpx_auth.OAuth2ClientCredentials(
            endpoint.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=tokens
        )
    clients = [
        httpx.AsyncClient(
            auth=auth, headers=headers, timeout=TIMEOUT, verify=SSL, limits=limits(per_client)
        )
        for _ in range(ASYNC_CLIENTS)
    ]

    async def work(client: httpx.AsyncClient) -> int:
        return (await client.get(api)).status_code

    async def prime() -> None:
        if auth is not None:
            await clients[0].get(api)

    return AsyncCase(clients, prime, work, [tokens.close])


async def released(
    n: int, clients: list[Any], work: Callable[[Any], Awaitable[object]]
) -> tuple[float, list[object]]:
    """Run ``work`` in ``n`` tasks released by one event, clients shared round-robin."""
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


def run_async(name: str, endpoint: TokenEndpoint, platform: FakePlatform, n: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        watch = Watch(loop_thread=threading.get_ident())
        case = async_case(name, endpoint, platform, n, watch)
        try:
            endpoint.reset(lifetime=PRIMED_LIFETIME)
            await case.prime()
            await asyncio.sleep(PRIMED_LIFETIME + 0.1)
            endpoint.reset(lifetime=3600)
            watch.blocking = 0
            wall, results = await released(n, case.clients, case.work)
            return {
                "calls": endpoint.calls,
                "wall": wall,
                "answers": Counter(map(str, results)),
                "blocking_token_calls_on_loop": watch.blocking,
            }
        finally:
            for client in case.clients:
                await client.aclose()
            for close in case.closers:
                close()

    return asyncio.run(main())


# -- report ---------------------------------------------------------------------------------------


def token_round_trip(endpoint: TokenEndpoint, times: int) -> float:
    with token_client() as client:
        samples = []
        for _ in range(times + 1):
            started = time.perf_counter()
            client.post(endpoint.url, data={"grant_type": "client_credentials"})
            samples.append(time.perf_counter() - started)
    return statistics.median(samples[1:])  # the first opens the connection


def summarise(samples: list[dict[str, Any]], single: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of a library's runs, with ``single``, its runs with one caller."""
    calls = [s["calls"] for s in samples]
    answers: Counter[str] = Counter()
    for sample in samples:
        answers.update(sample["answers"])
    summary: dict[str, Any] = {
        "calls": statistics.median(calls),
        "calls_min": min(calls),
        "calls_max": max(calls),
        "wall": statistics.median(s["wall"] for s in samples),
        "one_caller": statistics.median(s["wall"] for s in single),
        "answers": {k: v / len(samples) for k, v in sorted(answers.items())},
        "samples": [{**s, "answers": dict(s["answers"])} for s in samples],
        "one_caller_samples": [{**s, "answers": dict(s["answers"])} for s in single],
    }
    blocking = [s.get("blocking_token_calls_on_loop") for s in samples]
    if None not in blocking:
        summary["blocking_token_calls_on_loop"] = max(b for b in blocking if b is not None)
    return summary


def fmt_calls(summary: dict[str, Any]) -> str:
    low, high = summary["calls_min"], summary["calls_max"]
    return f"{low:,}" if low == high else f"{summary['calls']:g} (min {low:,}, max {high:,})"


def fmt_answers(answers: dict[str, float]) -> str:
    return ", ".join(f"{v:g} x {k}" for k, v in answers.items())


def target_met(summary: dict[str, Any]) -> bool:
    """The target: the whole burst answered within 1.5x the time one caller takes."""
    return bool(summary["wall"] < TARGET * summary["one_caller"])


def table(
    title: str,
    results: dict[str, dict[str, Any]],
    notes: dict[str, str],
    loop_column: bool = False,
) -> str:
    head = (
        "| library | token-endpoint calls | wall ms | one caller ms | wall / one caller "
        f"| target: under {TARGET:g}x | over the floor ms | API answers |"
    )
    rule = "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |"
    if loop_column:
        head += " blocking token calls on the loop |"
        rule += " ---: |"
    lines = [f"### {title}", "", head + " notes |", rule + " --- |"]
    floor = results[FLOOR]
    for name, summary in results.items():
        wall, one = summary["wall"], summary["one_caller"]
        if name == FLOOR:  # no refresh: the target does not apply
            ratio, met, over = "", "", ""
        else:
            ratio = f"{wall / one:,.1f}"
            met = "met" if target_met(summary) else "**missed**"
            over = f"{(wall - floor['wall']) * 1e3:+,.0f}"
        row = (
            f"| {name} | {fmt_calls(summary)} | {wall * 1e3:,.0f} | {one * 1e3:,.1f} "
            f"| {ratio} | {met} | {over} | {fmt_answers(summary['answers'])} |"
        )
        if loop_column:
            row += f" {summary['blocking_token_calls_on_loop']} |"
        lines.append(f"{row} {notes.get(name, '')} |")
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """The Markdown tables, from the JSON this script writes."""
    trip = data["token_round_trip"]
    floors = [data[key][FLOOR]["wall"] for key in ("threads_results", "tasks_results")]
    head = (
        "*Wall*: from the callers' release to the last answer. *One caller*: the same run with a "
        "single caller, measured the same way: one token round trip and one API call through "
        f"that library. A bare token round trip (50 ms endpoint, through httpx) takes "
        f"{trip * 1e3:.1f} ms. The floor, the same burst with a valid token and no refresh to "
        f"do, takes {floors[0] * 1e3:,.0f} ms with threads and {floors[1] * 1e3:,.0f} ms with "
        f"tasks ({floors[0] / trip:,.1f}x and {floors[1] / trip:,.1f}x a token round trip): "
        "where that is over the target, the API calls alone miss it, and *over the floor* is "
        f"what the refresh added. Medians over {data['rounds']} round(s)."
    )
    return "\n\n".join(
        [
            head,
            table(
                f"{data['threads']} threads, one shared httpx.Client",
                data["threads_results"],
                SYNC_NOTES,
            ),
            table(
                f"{data['tasks']:,} asyncio tasks over {data['async_clients']} AsyncClients",
                data["tasks_results"],
                ASYNC_NOTES,
                loop_column=True,
            ),
            adapters_table(data["adapters"]),
        ]
    )


def run_adapters(quick: bool) -> dict[str, Any]:
    """Every adapter's stampede (``_stampede_adapters.py``), in a process that has httpx2."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "adapters.json"
        script = Path(__file__).resolve().parent / "_stampede_adapters.py"
        args = [sys.executable, str(script), "--out", str(out), *(["--quick"] if quick else [])]
        subprocess.run(args, check=True)
        found: dict[str, Any] = json.loads(out.read_text())
        return found


def adapters_table(data: dict[str, Any]) -> str:
    """Per adapter: token calls and wall time of the burst on an expired context, beside the
    same burst on a fresh one (the floor)."""
    lines = [
        f"### Every adapter: {data['threads']} threads or {data['tasks']:,} tasks on one "
        "expired context",
        "",
        "Each adapter's own client and pipeline; the floor is the same burst on a fresh "
        "context, with no refresh to do. httpx's tasks spread over "
        f"{data['async_clients']} AsyncClients, aiohttp's share one session. Medians over "
        f"{data['rounds']} round(s).",
        "",
        "| adapter | callers | token-endpoint calls | wall ms | floor ms | over the floor ms "
        "| API answers |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, figures in data["adapters"].items():
        burst, floor = figures["stampede"], figures["floor"]
        lines.append(
            f"| {name} | {figures['callers']:,} {figures['concurrency']} | {fmt_calls(burst)} "
            f"| {burst['wall'] * 1e3:,.0f} | {floor['wall'] * 1e3:,.0f} "
            f"| {(burst['wall'] - floor['wall']) * 1e3:+,.0f} | {fmt_answers(burst['answers'])} |"
        )
    return "\n".join(lines)


SYNC_NOTES = {
    FLOOR: "the same burst with no refresh to do: what the API round trips cost alone",
    "asapp-auth": "single-flight: one caller runs the provider, the others wait for its answer",
    "httpx-auth": "a lock serialises refreshes, but each waiter fetches again once it has it",
    "authlib": "no lock in the sync client: every thread fetches its own token",
}
ASYNC_NOTES = {
    FLOOR: "the same burst with no refresh to do",
    "asapp-auth": "provider runs in a worker thread; one flight shared by the 25 clients",
    "httpx-auth": "sync auth_flow only: the token request is a blocking call on the event loop",
    "authlib, 25 AsyncOAuth2Clients": "lock and token are per client: one refresh per client",
    "authlib, one shared AsyncOAuth2Client": "one client for every task (pool of 1,000+)",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer callers and rounds")
    args = parser.parse_args(argv)
    threads, tasks, rounds = (30, 200, 1) if args.quick else (200, 1000, 3)
    sync_names = [FLOOR, "asapp-auth", "httpx-auth", "authlib"]
    async_names = [
        FLOOR,
        "asapp-auth",
        "httpx-auth",
        "authlib, 25 AsyncOAuth2Clients",
        "authlib, one shared AsyncOAuth2Client",
    ]
    Samples = dict[str, list[dict[str, Any]]]
    sync_samples: Samples = {name: [] for name in sync_names}
    async_samples: Samples = {name: [] for name in async_names}
    sync_single: Samples = {name: [] for name in sync_names}
    async_single: Samples = {name: [] for name in async_names}
    with FakePlatform() as platform:
        endpoint = TokenEndpoint(platform, TOKEN_DELAY)
        try:
            trip = token_round_trip(endpoint, 10)
            for _ in range(rounds):
                for name in random.sample(sync_names, len(sync_names)):
                    sync_samples[name].append(run_sync(name, endpoint, platform, threads))
                    sync_single[name].append(run_sync(name, endpoint, platform, 1))
                for name in random.sample(async_names, len(async_names)):
                    async_samples[name].append(run_async(name, endpoint, platform, tasks))
                    async_single[name].append(run_async(name, endpoint, platform, 1))
        finally:
            endpoint.close()
    adapters = run_adapters(args.quick)
    data = {
        "quick": args.quick,
        "threads": threads,
        "tasks": tasks,
        "async_clients": ASYNC_CLIENTS,
        "rounds": rounds,
        "token_delay": TOKEN_DELAY,
        "token_round_trip": trip,
        "target": TARGET,
        "threads_results": {
            name: summarise(sync_samples[name], sync_single[name]) for name in sync_names
        },
        "tasks_results": {
            name: summarise(async_samples[name], async_single[name]) for name in async_names
        },
        "adapters": adapters,
    }
    print(markdown(data))
    # BENCH_RESULTS: another folder for the results (the smoke test's, say).
    out = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "stampede.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
