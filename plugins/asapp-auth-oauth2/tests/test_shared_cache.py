"""A fleet sharing a Redis cache, refreshing with rotated refresh tokens against a real
authorization server: every refresh token is spent once, by one process."""

from __future__ import annotations

import time
from typing import Any

from authserver import AuthServer, Client

from asapp_auth import AuthPipeline
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import RedisServer


def test_a_fleet_spends_each_rotated_refresh_token_once(
    make: Any, auth: AuthServer, redis_server: RedisServer
) -> None:
    auth.add_client(Client(client_id="app", auth_method="none", grant_types=("refresh_token",)))
    auth.lifetime = 1  # access tokens expire every second: several refreshes in the run
    seed = auth.login("app", "alice")
    key, namespace = generate_key(), f"oauth2-fleet-{time.monotonic_ns()}"
    plugins, pipelines = [], []
    for _ in range(3):  # three processes' worth of plugin, cache and pipeline
        plugin = make(
            token_endpoint=auth.token_url,
            client_id="app",
            client_auth="none",
            grant="refresh_token",
            allow_http=True,
        )
        cache = RedisContextCache(redis_server.url, keys=[key], namespace=namespace, front_ttl=0.1)
        pipeline = AuthPipeline(
            ["https://api.chat.example"], cache=cache, expiry_margin=0.1, refresh_ahead=0.3
        )
        pipeline.register(plugin, "oauth2")
        pipeline.load("alice")
        plugins.append(plugin)
        pipelines.append(pipeline)
    plugins[0].set_refresh_token("alice", seed)  # the customer logged in on the first process

    seen: set[str] = set()
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        for pipeline in pipelines:
            token = pipeline.get_context().token
            assert token is not None
            assert auth.by_access[token].user == "alice"
            seen.add(token)
        time.sleep(0.01)

    sent = [form["refresh_token"][0] for form in auth.forms if "refresh_token" in form]
    assert len(sent) >= 3, "the access token should have been refreshed several times"
    assert len(sent) == len(set(sent)), "a refresh token was sent twice"
    assert auth.refused_refresh == []
    # Each access token served came from one of those refreshes, shared by the three processes
    # (the last refresh, done ahead in the background, may not have been served yet).
    assert len(seen) <= len(sent)
