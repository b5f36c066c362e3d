"""OAuth2 end to end: requests per second under constant load while the token expires every 3 s.

A pipeline using the oauth2 plugin (client credentials) sends GETs to an API that checks bearer
tokens, from 8 threads sharing one ``httpx.Client`` and, separately, from 8 asyncio tasks, for 10
seconds without a pause. Each task has its own ``httpx.AsyncClient`` (one auth shared by all):
tasks sharing one AsyncClient see requests stall for up to seconds in httpcore's async pool, for
every library alike, and 32 tasks get a quarter of the throughput of 8. The token endpoint takes
50 ms and issues tokens that last 3 seconds, so each run crosses three expiries. Wanted: no
request fails at an expiry boundary, and none waits for a refresh that could have been done ahead
of time.

Compared in the same run: asapp-auth with ``refresh_ahead`` (one caller starts a refresh in the
background half a second before the token is due, while every request keeps the current token);
the same with ``refresh_ahead=0`` (requests wait at each expiry: what a request waiting on a
refresh looks like); httpx-auth's ``OAuth2ClientCredentials``, and authlib's ``OAuth2Client`` and
``AsyncOAuth2Client`` (a client holds its token, so one per task). Every library drops a token
0.3 s before it expires (``expiry_margin``, ``early_expiry``, ``leeway``). A floor row sends the
same load with a valid static token.

Both servers are real HTTP servers on 127.0.0.1, in a child process so that serving does not take
the GIL from the clients: the API is ``FakePlatform``'s ``/v1/account`` (401 for an unknown or
expired token), the token endpoint is scenario 2's. Reported per library: requests per second,
token-endpoint calls and p99 latency as medians over interleaved rounds; the slowest request; and
as totals, failed requests (any answer but 200, or an exception), the API's 401s (asapp-auth
retries a rejected request once, so a 401 need not fail), requests slower than the token
endpoint's 50 ms, and the requests that waited on a refresh: slower than a token call, and in
flight during one (the token endpoint records when each call began and ended).

    python bench/bench_oauth2_e2e.py [--quick]

Writes bench/results/oauth2_e2e.json and prints Markdown tables. Figures, not assertions.
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
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _httpx_only  # noqa: F401  (first: authlib must bind to httpx, not httpx2)
import httpx
import httpx_auth

# Scenario 2's token endpoint. Importing it also imports authlib with its import-time warning
# silenced, and makes httpcore skip its per-request ``import sniffio`` (see there). ``SSL``: one
# context for every client, as each new one loads the CA bundle.
from bench_stampede import SSL, AsyncOAuth2Client, OAuth2Client, TokenEndpoint

from asapp_auth import AuthPipeline
from asapp_auth.testing import Exchange, FakePlatform

TOKEN_DELAY = 0.05
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
THREADS, TASKS = 8, 8
FLOOR = "floor: raw httpx, valid static token"
AHEAD = "asapp-auth, refresh ahead"
NO_AHEAD = "asapp-auth, refresh_ahead=0"
NAMES = [FLOOR, AHEAD, NO_AHEAD, "httpx-auth", "authlib"]
TIMEOUT = httpx.Timeout(30.0)
LIMITS = httpx.Limits(max_connections=THREADS + 8, max_keepalive_connections=THREADS + 8)


@dataclass(frozen=True)
class Settings:
    """One run's shape: tokens last ``lifetime`` seconds; each library drops a token ``margin``
    seconds before it expires; asapp-auth refreshes ``ahead`` seconds before that."""

    rounds: int
    seconds: float
    lifetime: int  # whole seconds: httpx-auth and authlib truncate expires_in to an int
    margin: float
    ahead: float


# -- the servers, in a child process --------------------------------------------------------------


def serve() -> int:
    """Run the API and the token endpoint until stdin closes; print their URLs first."""
    with FakePlatform() as platform:
        endpoint = TokenEndpoint(platform, TOKEN_DELAY)

        def reset(exchange: Exchange) -> None:
            endpoint.reset(lifetime=float(exchange.query["lifetime"][0]))
            platform.received.clear()
            exchange.answer(200, {})

        def stats(exchange: Exchange) -> None:
            api = [r for r in list(platform.received) if r.path == "/v1/account"]
            exchange.answer(
                200,
                {
                    "token_calls": endpoint.calls,
                    "token_spans": endpoint.spans,
                    "api_requests": len(api),
                    "api_401": sum(1 for r in api if r.customer_id is None),
                },
            )

        def static(exchange: Exchange) -> None:
            exchange.answer(200, {"token": platform.issue_token("service", 3600)})

        platform.route("/bench/reset", reset)
        platform.route("/bench/stats", stats)
        platform.route("/bench/static", static)
        print(json.dumps({"api": platform.url, "token_endpoint": endpoint.url}), flush=True)
        try:
            sys.stdin.read()
        finally:
            endpoint.close()
    return 0


class Servers:
    """The child process serving the API and the token endpoint, and its control routes."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        urls = json.loads(self._process.stdout.readline())
        self.origin: str = urls["api"]
        self.api = f"{self.origin}/v1/account"
        self.public = f"{self.origin}/public"
        self.token_endpoint: str = urls["token_endpoint"]
        self._control = httpx.Client(base_url=self.origin, timeout=TIMEOUT, verify=SSL)

    def reset(self, lifetime: float) -> None:
        self._control.get("/bench/reset", params={"lifetime": lifetime}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._control.get("/bench/stats").json()
        return stats

    def static_token(self) -> str:
        token: str = self._control.get("/bench/static").json()["token"]
        return token

    def close(self) -> None:
        self._control.close()
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


# -- the libraries --------------------------------------------------------------------------------


def asapp_pipeline(servers: Servers, settings: Settings, ahead: float) -> AuthPipeline:
    oauth2 = {
        "token_endpoint": servers.token_endpoint,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "expiry_margin": settings.margin,
    }
    pipeline = AuthPipeline(
        origins=[servers.origin],
        plugins={"oauth2": oauth2},
        expiry_margin=settings.margin,
        refresh_ahead=ahead,
    )
    pipeline.load("service")
    return pipeline


def close_pipeline(pipeline: AuthPipeline) -> None:
    pipeline.plugin_manager.get_plugin("oauth2").close()


@dataclass
class SyncCase:
    """One library's sync setup: ``warm`` opens a connection unauthenticated, ``prime`` gets
    the first token, ``work`` is one authenticated GET answering its status code."""

    warm: Callable[[], object]
    prime: Callable[[], object]
    work: Callable[[], int]
    close: Callable[[], object]


def sync_case(name: str, servers: Servers, settings: Settings) -> SyncCase:
    api, public = servers.api, servers.public
    if name == "authlib":
        authlib = OAuth2Client(
            CLIENT_ID,
            CLIENT_SECRET,
            token_endpoint=servers.token_endpoint,
            grant_type="client_credentials",
            leeway=settings.margin,
            timeout=TIMEOUT,
            verify=SSL,
            limits=LIMITS,
        )
        return SyncCase(
            warm=lambda: authlib.request("GET", public, withhold_token=True),
            prime=authlib.fetch_token,
            work=lambda: authlib.get(api).status_code,
            close=authlib.close,
        )
    closers: list[Callable[[], object]] = []
    auth: httpx.Auth | None = None
    headers: dict[str, str] = {}
    if name == FLOOR:
        headers["Authorization"] = f"Bearer {servers.static_token()}"
    elif name in (AHEAD, NO_AHEAD):
        pipeline = asapp_pipeline(servers, settings, settings.ahead if name == AHEAD else 0)
        auth = pipeline
        closers.append(lambda: close_pipeline(pipeline))
    else:
        httpx_auth.OAuth2.token_cache.clear()  # one cache for the process
        tokens = httpx.Client(timeout=TIMEOUT, verify=SSL)
        auth = httpx_auth.OAuth2ClientCredentials(
            servers.token_endpoint,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            early_expiry=settings.margin,
            client=tokens,
        )
        closers.append(tokens.close)
    client = httpx.Client(auth=auth, headers=headers, timeout=TIMEOUT, verify=SSL, limits=LIMITS)
    closers.append(client.close)
    return SyncCase(
        warm=lambda: client.get(public, auth=None),
        prime=lambda: client.get(api),
        work=lambda: client.get(api).status_code,
        close=lambda: [close() for close in closers],
    )


@dataclass
class AsyncCase:
    """One library's asyncio setup: a client per task (see the module docstring), ``warm``
    and ``work`` take the client, ``prime`` gets the first token."""

    clients: list[Any]
    warm: Callable[[Any], Awaitable[object]]
    prime: Callable[[], Awaitable[object]]
    work: Callable[[Any], Awaitable[int]]
    closers: list[Callable[[], object]] = field(default_factory=list)


def async_case(name: str, servers: Servers, settings: Settings) -> AsyncCase:
    api, public = servers.api, servers.public

    async def work(client: Any) -> int:
        return (await client.get(api)).status_code

    if name == "authlib":
        # An AsyncOAuth2Client is the token's holder: one per task means one token each.
        authlib = [
            AsyncOAuth2Client(
                CLIENT_ID,
                CLIENT_SECRET,
                token_endpoint=servers.token_endpoint,
                grant_type="client_credentials",
                leeway=settings.margin,
                timeout=TIMEOUT,
                verify=SSL,
                limits=LIMITS,
            )
            for _ in range(TASKS)
        ]

        async def prime_authlib() -> None:
            await asyncio.gather(*(client.fetch_token() for client in authlib))

        return AsyncCase(
            clients=authlib,
            warm=lambda client: client.request("GET", public, withhold_token=True),
            prime=prime_authlib,
            work=work,
        )
    closers: list[Callable[[], object]] = []
    auth: httpx.Auth | None = None
    headers: dict[str, str] = {}
    if name == FLOOR:
        headers["Authorization"] = f"Bearer {servers.static_token()}"
    elif name in (AHEAD, NO_AHEAD):
        pipeline = asapp_pipeline(servers, settings, settings.ahead if name == AHEAD else 0)
        auth = pipeline
        closers.append(lambda: close_pipeline(pipeline))
    else:
        # httpx-auth has no async flow: its token request is a blocking call on the event loop.
        httpx_auth.OAuth2.token_cache.clear()
        tokens = httpx.Client(timeout=TIMEOUT, verify=SSL)
        auth = httpx_auth.OAuth2ClientCredentials(
            servers.token_endpoint,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            early_expiry=settings.margin,
            client=tokens,
        )
        closers.append(tokens.close)
    clients = [
        httpx.AsyncClient(auth=auth, headers=headers, timeout=TIMEOUT, verify=SSL, limits=LIMITS)
        for _ in range(TASKS)
    ]
    return AsyncCase(
        clients=clients,
        warm=lambda client: client.get(public, auth=None),
        prime=lambda: clients[0].get(api),
        work=work,
        closers=closers,
    )


# -- load -----------------------------------------------------------------------------------------


@dataclass
class Load:
    """What the callers saw: when each request began and ended (``time.monotonic``, the clock
    the token endpoint's spans use), each answer, and the run's wall time."""

    elapsed: float = 0.0
    spans: list[tuple[float, float]] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)


def answer(outcome: int | BaseException) -> str:
    return type(outcome).__name__ if isinstance(outcome, BaseException) else str(outcome)


def threads_load(n: int, seconds: float, work: Callable[[], int]) -> Load:
    """``n`` threads released together, each sending requests one after another until the
    deadline; the last request started before it is answered."""
    started: list[float] = []
    barrier = threading.Barrier(n, action=lambda: started.append(time.monotonic()))
    loads = [Load() for _ in range(n)]
    ends = [0.0] * n

    def worker(i: int) -> None:
        load = loads[i]
        barrier.wait()
        deadline = started[0] + seconds
        clock = time.monotonic
        while (begun := clock()) < deadline:
            try:
                outcome: int | BaseException = work()
            except Exception as exc:
                outcome = exc
            load.spans.append((begun, clock()))
            load.answers[answer(outcome)] += 1
        ends[i] = clock()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return merge(loads, max(ends) - started[0])


async def tasks_load(
    clients: list[Any], seconds: float, work: Callable[[Any], Awaitable[int]]
) -> Load:
    """A task per client, released by one event, each sending requests until the deadline."""
    go = asyncio.Event()
    loads = [Load() for _ in clients]
    deadline = 0.0

    async def one(load: Load, client: Any) -> None:
        await go.wait()
        clock = time.monotonic
        while (begun := clock()) < deadline:
            try:
                outcome: int | BaseException = await work(client)
            except Exception as exc:
                outcome = exc
            load.spans.append((begun, clock()))
            load.answers[answer(outcome)] += 1

    tasks = [
        asyncio.create_task(one(load, client)) for load, client in zip(loads, clients, strict=True)
    ]
    await asyncio.sleep(0.01)  # every task is waiting on the event
    started = time.monotonic()
    deadline = started + seconds
    go.set()
    await asyncio.gather(*tasks)
    return merge(loads, time.monotonic() - started)


def merge(loads: list[Load], elapsed: float) -> Load:
    total = Load(elapsed=elapsed)
    for load in loads:
        total.spans.extend(load.spans)
        total.answers.update(load.answers)
    return total


def sample(load: Load, stats: dict[str, Any], primed: int) -> dict[str, Any]:
    """One run's figures, from the callers' side and the servers' (``primed``: the token calls
    made before the load began, not counted).

    A request waited on a refresh when it took longer than a token call and was in flight
    during one: a slow request with no token call under way is the machine's doing.
    """
    latencies = sorted(end - begun for begun, end in load.spans)
    count = len(latencies)
    calls = [tuple(span) for span in stats["token_spans"]]
    waited = sum(
        1
        for begun, end in load.spans
        if end - begun > TOKEN_DELAY
        and any(begun < c_end and end > c_begun for c_begun, c_end in calls)
    )
    return {
        "requests": count,
        "seconds": load.elapsed,
        "rps": count / load.elapsed,
        "answers": dict(load.answers),
        "failed": count - load.answers.get("200", 0),
        "api_401": stats["api_401"],
        "token_calls": stats["token_calls"] - primed,
        "p50_ms": latencies[count // 2] * 1e3,
        "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1e3,
        "max_ms": latencies[-1] * 1e3,
        "slow": sum(1 for latency in latencies if latency > TOKEN_DELAY),
        "waited": waited,
    }


def run_threads(name: str, servers: Servers, settings: Settings) -> dict[str, Any]:
    case = sync_case(name, servers, settings)
    try:
        warm = threads_load(THREADS, 0.05, lambda: getattr(case.warm(), "status_code", 0))
        if set(warm.answers) != {"200"}:
            raise RuntimeError(f"{name}: opening connections failed: {warm.answers}")
        servers.reset(settings.lifetime)
        case.prime()
        primed = servers.stats()["token_calls"]
        load = threads_load(THREADS, settings.seconds, case.work)
        return sample(load, servers.stats(), primed)
    finally:
        case.close()


def run_tasks(name: str, servers: Servers, settings: Settings) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        case = async_case(name, servers, settings)
        try:

            async def warm(client: Any) -> int:
                return getattr(await case.warm(client), "status_code", 0)

            opened = await tasks_load(case.clients, 0.05, warm)
            if set(opened.answers) != {"200"}:
                raise RuntimeError(f"{name}: opening connections failed: {opened.answers}")
            servers.reset(settings.lifetime)  # blocking calls, but outside the load
            await case.prime()
            primed = servers.stats()["token_calls"]
            load = await tasks_load(case.clients, settings.seconds, case.work)
            return sample(load, servers.stats(), primed)
        finally:
            for client in case.clients:
                await client.aclose()
            for close in case.closers:
                close()

    return asyncio.run(main())


# -- report ---------------------------------------------------------------------------------------


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str) -> float:
        return statistics.median(s[key] for s in samples)

    calls = [s["token_calls"] for s in samples]
    answers: Counter[str] = Counter()
    for s in samples:
        answers.update(s["answers"])
    return {
        "rps": median("rps"),
        "requests": sum(s["requests"] for s in samples),
        "failed": sum(s["failed"] for s in samples),
        "answers": dict(sorted(answers.items())),
        "api_401": sum(s["api_401"] for s in samples),
        "token_calls": median("token_calls"),
        "token_calls_min": min(calls),
        "token_calls_max": max(calls),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "max_ms": max(s["max_ms"] for s in samples),
        "slow": sum(s["slow"] for s in samples),
        "waited": sum(s["waited"] for s in samples),
        "samples": samples,
    }


def met(results: dict[str, dict[str, Any]]) -> bool:
    """The target, for asapp-auth with refresh ahead: no request failed, none waited."""
    ours = results[AHEAD]
    return bool(ours["failed"] == 0 and ours["waited"] == 0)


def verdict(results: dict[str, dict[str, Any]]) -> str:
    ours = results[AHEAD]
    return (
        "Target for asapp-auth with refresh ahead, no request failed and none waited on a "
        f"refresh: **{'met' if met(results) else 'missed'}** ({ours['failed']:,} failed, "
        f"{ours['waited']:,} waited)."
    )


def fmt_calls(summary: dict[str, Any]) -> str:
    low, high = summary["token_calls_min"], summary["token_calls_max"]
    return f"{low:,}" if low == high else f"{summary['token_calls']:g} ({low:,}-{high:,})"


def table(title: str, results: dict[str, dict[str, Any]], notes: dict[str, str]) -> str:
    over = f"over {TOKEN_DELAY * 1e3:.0f} ms"
    lines = [
        f"### {title}",
        "",
        f"| library | requests/s | failed | API 401s | token calls | p99 ms | slowest ms | {over} "
        "| waited on a refresh | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, s in results.items():
        lines.append(
            f"| {name} | {s['rps']:,.0f} | {s['failed']:,} | {s['api_401']:,} | {fmt_calls(s)} "
            f"| {s['p99_ms']:.1f} | {s['max_ms']:,.0f} | {s['slow']:,} | {s['waited']:,} "
            f"| {notes.get(name, '')} |"
        )
    lines += ["", verdict(results)]
    return "\n".join(lines)


def notes(data: dict[str, Any], tasks: bool) -> dict[str, str]:
    margin, ahead = data["expiry_margin"], data["refresh_ahead"]
    return {
        FLOOR: "no refresh to do: the load's own latency",
        AHEAD: f"`expiry_margin={margin:g}, refresh_ahead={ahead:g}`: one caller starts the "
        "refresh in a background thread; requests keep the current token meanwhile",
        NO_AHEAD: f"`expiry_margin={margin:g}, refresh_ahead=0`: at each expiry every request "
        "waits for one refresh",
        "httpx-auth": f"`early_expiry={margin:g}`; "
        + (
            "sync auth flow only: the token request blocks the event loop"
            if tasks
            else "a lock serialises refreshes; each waiter may fetch again after it"
        ),
        "authlib": f"`leeway={margin:g}`; "
        + (
            "an AsyncOAuth2Client per task, each with its own token and lock"
            if tasks
            else "no lock in the sync client: each thread that sees the expiry fetches"
        ),
    }


def markdown(data: dict[str, Any]) -> str:
    """The Markdown tables, from the JSON this script writes."""
    seconds, lifetime = data["seconds"], data["lifetime"]
    head = (
        f"Tokens last {lifetime:g} s, so each {seconds:g}-second run spans "
        f"{seconds / lifetime:.1f} token lifetimes; the token endpoint takes "
        f"{data['token_delay'] * 1e3:.0f} ms. Token calls are those made during the run (the "
        "first token, fetched before it, is not counted). Requests/s, token calls and p99 are "
        "medians over "
        f"{data['rounds']} round(s); the counts of requests are totals over all rounds, and the "
        "slowest is the slowest of all. A request *waited on a refresh* when it took longer than "
        "a token call and was in flight during one."
    )
    return "\n\n".join(
        [
            head,
            table(
                f"{data['threads']} threads, one shared httpx.Client",
                data["threads_results"],
                notes(data, tasks=False),
            ),
            table(
                f"{data['tasks']} asyncio tasks, an httpx.AsyncClient each, one auth shared",
                data["tasks_results"],
                notes(data, tasks=True),
            ),
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round, 1-second tokens")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    if args.quick:
        settings = Settings(rounds=1, seconds=1.0, lifetime=1, margin=0.1, ahead=0.2)
    else:
        settings = Settings(rounds=3, seconds=10.0, lifetime=3, margin=0.3, ahead=0.5)
    threads: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    tasks: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    servers = Servers()
    try:
        for _ in range(settings.rounds):
            for name in random.sample(NAMES, len(NAMES)):
                threads[name].append(run_threads(name, servers, settings))
            for name in random.sample(NAMES, len(NAMES)):
                tasks[name].append(run_tasks(name, servers, settings))
    finally:
        servers.close()
    data = {
        "quick": args.quick,
        "rounds": settings.rounds,
        "seconds": settings.seconds,
        "lifetime": settings.lifetime,
        "expiry_margin": settings.margin,
        "refresh_ahead": settings.ahead,
        "token_delay": TOKEN_DELAY,
        "threads": THREADS,
        "tasks": TASKS,
        "threads_results": {name: summarise(samples) for name, samples in threads.items()},
        "tasks_results": {name: summarise(samples) for name, samples in tasks.items()},
    }
    print(markdown(data))
    # BENCH_RESULTS: another folder for the results (the smoke test's, say).
    out = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "oauth2_e2e.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
