"""Many requests that need a login at once: one login, one set_customer, every request goes on,
under threads and under asyncio, against the real authorization server. The customer logs in
only once every request has been answered "login required", so all of them wait on that login."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from asapp_auth_oauth2 import DeviceCode
from loginserver import DEVICE, LoginServer
from test_login import Browser, pipeline_for, plugin_for

from asapp_auth import AuthPipeline, Customer

REQUESTS = 40


class LateBrowser(Browser):
    """Logs in only once every request has reached the server anonymously."""

    def __init__(self, server: LoginServer) -> None:
        super().__init__()
        self.server = server

    def __call__(self, url: str) -> bool:
        assert self.server.wait_for_resource_calls(REQUESTS)
        return super().__call__(url)


def count_set_customer(pipeline: AuthPipeline) -> list[str]:
    """Record every set_customer call the plugin makes on ``pipeline``."""
    calls: list[str] = []
    lock = threading.Lock()
    original = pipeline.set_customer

    def recording(customer_id: str, context_provider: Any = None) -> Customer:
        with lock:
            calls.append(customer_id)
        return original(customer_id, context_provider)

    pipeline.set_customer = recording  # type: ignore[method-assign]
    return calls


def run_threads(pipeline: AuthPipeline, server: LoginServer) -> list[Any]:
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    with httpx.Client(auth=pipeline, limits=limits, timeout=30) as client:
        with ThreadPoolExecutor(REQUESTS) as pool:
            futures = [
                pool.submit(client.get, f"{server.base_url}/api/me") for _ in range(REQUESTS)
            ]
            return [f.result().json() for f in futures]


def run_tasks(pipeline: AuthPipeline, server: LoginServer) -> list[Any]:
    async def main() -> list[Any]:
        limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
        async with httpx.AsyncClient(auth=pipeline, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(
                *(client.get(f"{server.base_url}/api/me") for _ in range(REQUESTS))
            )
        return [r.json() for r in responses]

    return asyncio.run(main())


@pytest.mark.parametrize("runner", [run_threads, run_tasks], ids=["threads", "asyncio"])
def test_many_requests_needing_a_login_share_one_browser_login(
    make: Any, login_server: LoginServer, runner: Any
) -> None:
    """40 concurrent anonymous requests: one browser login, one code exchange, one
    set_customer, and every request answered as the customer who logged in."""
    browser = LateBrowser(login_server)
    plugin = plugin_for(make, login_server, open_browser=browser)
    pipeline = pipeline_for(plugin, login_server)
    calls = count_set_customer(pipeline)
    assert runner(pipeline, login_server) == [{"user": "alice"}] * REQUESTS
    assert len(browser.opened) == 1
    assert calls == ["alice"]
    assert login_server.calls["authorization_code"] == 1
    assert login_server.calls["refresh_token"] == 0
    assert login_server.jwks_calls == 1


@pytest.mark.parametrize("runner", [run_threads, run_tasks], ids=["threads", "asyncio"])
def test_many_requests_needing_a_login_share_one_device_login(
    make: Any, login_server: LoginServer, runner: Any
) -> None:
    """40 concurrent anonymous requests: one device code shown, one set_customer."""
    shown: list[DeviceCode] = []

    def customer(code: DeviceCode) -> None:
        shown.append(code)
        assert login_server.wait_for_resource_calls(REQUESTS)
        login_server.approve(code.user_code)

    plugin = plugin_for(make, login_server, login="device", show_device_code=customer)
    pipeline = pipeline_for(plugin, login_server)
    calls = count_set_customer(pipeline)
    assert runner(pipeline, login_server) == [{"user": "alice"}] * REQUESTS
    assert len(shown) == 1
    assert calls == ["alice"]
    assert login_server.calls["device_authorization"] == 1
    assert login_server.calls[DEVICE] == 1
