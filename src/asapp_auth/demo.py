"""``asapp-auth demo``: the SDKs' authentication model, step by step, with real requests.

A fake chat platform starts on 127.0.0.1; an ``AuthPipeline`` wraps an ``httpx.Client``; each
step makes requests and checks what the platform received. Secrets are never printed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import httpx

from .customer import Customer
from .hookspecs import hookimpl
from .pipeline import AuthPipeline
from .testing import FakePlatform, RecordingProvider


class _App:
    """The app's side: its login screen, which sets the customer once they have logged in."""

    def __init__(self, pipeline: AuthPipeline, platform: FakePlatform) -> None:
        self.pipeline = pipeline
        self.platform = platform
        self.providers: dict[str, RecordingProvider] = {}
        self.logins: list[str] = []

    def provider(self, customer_id: str) -> RecordingProvider:
        return self.providers.setdefault(customer_id, RecordingProvider(self.platform, customer_id))

    @hookimpl
    def on_login_required(self, customer: Customer | None, reason: str) -> bool:
        self.logins.append(reason)
        # The customer logs in on another thread (a UI, a browser redirect); it sets the customer.
        threading.Timer(0.05, self.pipeline.set_customer, ("alice", self.provider("alice"))).start()
        return True


class _Steps:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = 0
        self.number = 0

    def run(self, title: str, step: Callable[[], str]) -> None:
        self.number += 1
        started = time.perf_counter()
        try:
            detail = step()
        except Exception as exc:
            self.failed += 1
            line = f"FAIL  {type(exc).__name__}: {exc}"
        else:
            line = f"ok    {detail}"
        took = (time.perf_counter() - started) * 1000
        print(f"{self.number:>2}. {title:<46} {line}  ({took:.0f} ms)", file=self.out, flush=True)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def run(out: TextIO, concurrency: int = 50) -> int:
    """Run every step; return 0 when all behaved, 1 otherwise."""
    with FakePlatform() as platform:
        pipeline = AuthPipeline(origins=[platform.origin])
        app = _App(pipeline, platform)
        pipeline.register(app, name="demo-app")
        pipeline.load()  # start anonymous, as a visitor who has not logged in
        print(f"asapp-auth demo: chat platform at {platform.url}\n", file=out)
        steps = _Steps(out)
        client = httpx.Client(auth=pipeline, limits=httpx.Limits(max_connections=concurrency))
        url = platform.url

        def anonymous() -> str:
            response = client.get(f"{url}/public")
            sent = platform.received[-1].headers
            _check(response.status_code == 200, f"HTTP {response.status_code}")
            _check("Authorization" not in sent, "credentials were sent")
            return "HTTP 200, no credentials sent"

        def needs_login() -> str:
            response = client.get(f"{url}/v1/account")
            _check(app.logins == ["anonymous"], f"login handler calls: {app.logins}")
            _check(response.json() == {"customer": "alice"}, f"answered {response.json()}")
            return "401 -> on_login_required -> set_customer('alice') -> HTTP 200 as alice"

        def attached() -> str:
            context = pipeline.get_context()
            sent = platform.received[-1].headers.get("Authorization", "")
            _check(context is not None and sent == f"Bearer {context.token}", "context not sent")
            return f"Authorization: Bearer <redacted>; {context!r}"

        def cached() -> str:
            for _ in range(20):
                client.get(f"{url}/v1/account")
            calls = app.providers["alice"].calls
            _check(calls == [False], f"provider calls: {calls}")
            return "20 requests, 1 provider call in all"

        def expiry() -> str:
            provider = app.providers["alice"]
            provider.delay = 0.05  # the app's token service takes 50 ms
            platform.expire()
            with ThreadPoolExecutor(concurrency) as pool:
                results = list(
                    pool.map(lambda _: client.get(f"{url}/v1/account"), range(concurrency))
                )
            statuses = {r.status_code for r in results}
            _check(statuses == {200}, f"statuses {statuses}")
            _check(provider.refreshes == 1, f"{provider.refreshes} refreshes")
            return f"{concurrency} concurrent requests on an expired token: 1 refresh, all HTTP 200"

        def switch() -> str:
            pipeline.set_customer("bob", app.provider("bob"))
            answer: dict[str, Any] = client.get(f"{url}/v1/account").json()
            _check(answer == {"customer": "bob"}, f"answered {answer}")
            return "set_customer('bob') -> the next request is bob's"

        def cleared() -> str:
            pipeline.clear()
            response = client.get(f"{url}/public")
            sent = platform.received[-1].headers
            _check(response.status_code == 200 and "Authorization" not in sent, "context sent")
            _check(pipeline.get_context() is None, "a context is still served")
            return "clear() -> anonymous again, nothing attached"

        def other_origin() -> str:
            with FakePlatform() as elsewhere:
                client.get(f"{url}/v1/account")  # logs alice in again
                client.get(
                    f"{url}/redirect",
                    params={"to": f"{elsewhere.url}/public"},
                    follow_redirects=True,
                )
                _check("Authorization" not in elsewhere.received[0].headers, "context leaked")
            return "a redirect to another origin carried no credentials"

        for title, step in (
            ("anonymous request", anonymous),
            ("request that needs a login", needs_login),
            ("context attached to platform requests", attached),
            ("context cached", cached),
            ("token expires under load", expiry),
            ("customer switch mid-session", switch),
            ("clear back to anonymous", cleared),
            ("redirect to another origin", other_origin),
        ):
            steps.run(title, step)
        client.close()
    print(file=out)
    if steps.failed:
        print(f"{steps.failed} of {steps.number} steps did not behave", file=out)
        return 1
    print(f"all {steps.number} steps behaved", file=out)
    return 0
