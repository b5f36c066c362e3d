"""Cached-path cost per request: asapp-auth against raw httpx and the auth libraries users pick.

Every variant sends the same GET through the same kind of transport; rounds are interleaved
(each round runs every variant once, in a shuffled order) and the medians over rounds are
reported, as microseconds per request and as overhead over raw httpx with a static header.

    python bench/bench_cached_path.py [--quick]

Writes bench/results/cached_path.json and prints a Markdown table. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _httpx_only  # noqa: F401  (first: authlib must bind to httpx, not httpx2)
import httpx

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth.testing import FakePlatform

URL = "https://api.chat.example/v1/account"
TOKEN = "tok-bench"


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"{}")


class OneHeader(httpx.Auth):
    """The practical limit: a hand-written auth that sets one header."""

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {TOKEN}"
        yield request


def token_endpoint(request: httpx.Request) -> httpx.Response:
    body = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}
    return httpx.Response(200, json=body)


def pipeline_for(origin: str, headers: dict[str, str] | None = None) -> AuthPipeline:
    pipeline = AuthPipeline(origins=[origin])
    auth: dict[str, Any] = {"Token": TOKEN}
    if headers:
        auth["Headers"] = headers
    context = AuthContext({"Auth": auth}, expires_in=3600)
    pipeline.load("alice", lambda needs_refresh: context)
    return pipeline


def sync_variants(transport: httpx.BaseTransport, url: str) -> dict[str, httpx.Client]:
    origin = str(httpx.URL(url).copy_with(path="/", query=None)).rstrip("/")
    variants = {
        "raw httpx, static header": httpx.Client(
            transport=transport, headers={"Authorization": f"Bearer {TOKEN}"}
        ),
        "one-header httpx.Auth": httpx.Client(transport=transport, auth=OneHeader()),
        "asapp-auth": httpx.Client(transport=transport, auth=pipeline_for(origin)),
    }
    try:
        import httpx_auth

        token_client = httpx.Client(transport=httpx.MockTransport(token_endpoint))
        auth = httpx_auth.OAuth2ClientCredentials(
            "https://auth.example/token", client_id="id", client_secret="x", client=token_client
        )
        variants["httpx-auth client credentials"] = httpx.Client(transport=transport, auth=auth)
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            import authlib.deprecate  # noqa: F401  (it sets "always" for its warnings: filter after)

            # authlib warns on import that its httpx support moves to "httpx2".
            warnings.simplefilter("ignore")
            from authlib.integrations.httpx_client import OAuth2Client

        token = {"access_token": TOKEN, "token_type": "Bearer", "expires_at": time.time() + 3600}
        variants["authlib OAuth2Client"] = OAuth2Client(
            client_id="id", client_secret="x", token=token, transport=transport
        )
    except ImportError:
        pass
    for client in variants.values():
        client.get(url)  # warm up: first token, connections
    return variants


def async_variants(url: str) -> dict[str, httpx.AsyncClient]:
    transport = httpx.MockTransport(ok)
    origin = "https://api.chat.example"
    variants = {
        "raw httpx, static header": httpx.AsyncClient(
            transport=transport, headers={"Authorization": f"Bearer {TOKEN}"}
        ),
        "one-header httpx.Auth": httpx.AsyncClient(transport=transport, auth=OneHeader()),
        "asapp-auth": httpx.AsyncClient(transport=transport, auth=pipeline_for(origin)),
    }
    try:
        # Imported (and its warning silenced) by sync_variants already.
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        token = {"access_token": TOKEN, "token_type": "Bearer", "expires_at": time.time() + 3600}
        variants["authlib OAuth2Client"] = AsyncOAuth2Client(
            client_id="id", client_secret="x", token=token, transport=transport
        )
    except ImportError:
        pass
    return variants


def measure(
    names: list[str], run: Callable[[str, int], float], rounds: int, per_round: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        order = names[:]
        random.shuffle(order)
        for name in order:
            samples[name].append(run(name, per_round) / per_round * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_sync(
    variants: dict[str, httpx.Client], url: str, rounds: int, per_round: int
) -> dict[str, float]:
    def run(name: str, n: int) -> float:
        client = variants[name]
        started = time.perf_counter()
        for _ in range(n):
            client.get(url)
        return time.perf_counter() - started

    return measure(list(variants), run, rounds, per_round)


def bench_async(url: str, rounds: int, per_round: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        variants = async_variants(url)
        for client in variants.values():
            await client.get(url)
        timings: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            order = list(variants)
            random.shuffle(order)
            for name in order:
                client = variants[name]
                started = time.perf_counter()
                for _ in range(per_round):
                    await client.get(url)
                timings[name].append((time.perf_counter() - started) / per_round * 1e6)
        return {name: statistics.median(values) for name, values in timings.items()}

    return asyncio.run(main())


def bench_flow_only(rounds: int, per_round: int) -> dict[str, float]:
    """Drive each auth flow by hand on prebuilt requests: the auth layer's own cost, no I/O."""
    origin = "https://api.chat.example"
    auths: dict[str, httpx.Auth | None] = {
        "raw httpx, static header": None,
        "one-header httpx.Auth": OneHeader(),
        "asapp-auth": pipeline_for(origin),
        "asapp-auth, token + one more header (redirect guard on)": pipeline_for(
            origin, {"X-Session": "s"}
        ),
    }
    response = httpx.Response(200, content=b"{}")

    def run(name: str, n: int) -> float:
        auth = auths[name]
        requests = [httpx.Request("GET", URL) for _ in range(n)]
        started = time.perf_counter()
        if auth is None:
            for request in requests:
                request.headers["Authorization"] = f"Bearer {TOKEN}"
        else:
            for request in requests:
                flow = auth.sync_auth_flow(request)
                next(flow)
                try:
                    flow.send(response)
                except StopIteration:
                    pass
        return time.perf_counter() - started

    return measure(list(auths), run, rounds, per_round)


def table(title: str, medians: dict[str, float]) -> str:
    raw = medians["raw httpx, static header"]
    lines = [f"### {title}", "", "| variant | µs per request | over raw |", "| --- | ---: | ---: |"]
    for name, value in sorted(medians.items(), key=lambda item: item[1]):
        lines.append(f"| {name} | {value:.1f} | {value - raw:+.1f} |")
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """The Markdown tables, from the JSON this script writes."""
    return "\n\n".join(table(title, medians) for title, medians in data["results"].items())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, for a smoke run")
    args = parser.parse_args(argv)
    rounds, per_round = (3, 200) if args.quick else (25, 2000)
    results: dict[str, dict[str, float]] = {}
    results["auth flow alone (no transport)"] = bench_flow_only(rounds * 2, per_round * 5)
    mock = sync_variants(httpx.MockTransport(ok), URL)
    results["sync, httpx.MockTransport"] = bench_sync(mock, URL, rounds, per_round)
    results["async, httpx.MockTransport"] = bench_async(URL, rounds, per_round)
    with FakePlatform() as platform:
        url = f"{platform.url}/public"
        real = sync_variants(httpx.HTTPTransport(), url)
        results["sync, real server on 127.0.0.1"] = bench_sync(
            real, url, max(3, rounds // 3), per_round // 4
        )
    data = {"quick": args.quick, "rounds": rounds, "per_round": per_round, "results": results}
    print(markdown(data))
    # BENCH_RESULTS: another folder for the results (the smoke test's, say).
    out = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "cached_path.json").write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
