"""Revocation off the caller (RFC 7009): against a revocation endpoint that accepts and never
answers until the test releases it, clear() returns at once, close() waits at most its bound,
and every failure is logged without a secret."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from asapp_auth_oauth2 import SessionGoneError
from authserver import AuthServer, Client

from asapp_auth import AuthPipeline, Customer
from asapp_auth.errors import ProviderError
from asapp_auth.logids import logged

ALICE = logged("alice")  # how log records name customer 'alice'

SECRET = "revocation-client-secret"


@pytest.fixture
def server(auth: AuthServer) -> AuthServer:
    auth.add_client(Client("app", "client_secret_basic", ("refresh_token",), secret=SECRET))
    return auth


def plugin_for(make: Any, server: AuthServer, **extra: Any) -> Any:
    settings = {
        "token_endpoint": server.token_url,
        "revocation_endpoint": server.base_url + "/revoke",
        "client_id": "app",
        "client_secret": SECRET,
        "grant": "refresh_token",
        "revoke_on_clear": True,
        # A hanging endpoint would hold each attempt 30 s: what the tests show is not waited.
        "timeout": 30.0,
        **extra,
    }
    return make(**settings)


def logged_in(plugin: Any, server: AuthServer, customer: str = "alice") -> AuthPipeline:
    """A pipeline whose customer has a refresh token and a fetched access token."""
    plugin.set_refresh_token(customer, server.login("app", customer))
    pipeline = AuthPipeline(origins=["https://platform.example"])
    pipeline.register(plugin, name="oauth2")
    pipeline.load(customer_id=customer)
    assert pipeline.get_context() is not None
    return pipeline


def tokens_of(plugin: Any, server: AuthServer, customer: str = "alice") -> set[str]:
    refresh = plugin._tokens.refresh_tokens[customer]
    return {server.by_refresh[refresh].access_token, refresh}


def test_clear_returns_while_the_revocation_endpoint_hangs(make: Any, server: AuthServer) -> None:
    """clear() hands the revocation to the worker: it returns with the request still unanswered."""
    plugin = plugin_for(make, server)
    pipeline = logged_in(plugin, server)
    server.stall("/revoke")
    pipeline.clear()
    assert pipeline.customer is None
    assert server.wait_stalled("/revoke")  # the worker's request is held by the server ...
    assert plugin.pending_revocations == 1  # ... and clear() did not wait for its answer
    assert server.revoked == []
    with pytest.raises(SessionGoneError):  # the customer's tokens were taken at once
        plugin.provide_context(Customer("alice"), False, None)
    server.release()
    plugin.close()


def test_set_customer_returns_while_the_revocation_endpoint_hangs(
    make: Any, server: AuthServer
) -> None:
    """Switching customers hands the old one's revocation to the worker: set_customer() returns
    with that request unanswered, and the new customer's requests go on meanwhile."""
    plugin = plugin_for(make, server)
    pipeline = logged_in(plugin, server, "alice")
    plugin.set_refresh_token("bob", server.login("app", "bob"))
    server.stall("/revoke")
    pipeline.set_customer("bob")
    assert server.wait_stalled("/revoke")
    assert plugin.pending_revocations == 1
    assert server.revoked == []
    assert pipeline.get_context() is not None  # bob's own token, fetched while alice's hangs
    server.release()


def test_a_closed_plugin_queues_no_revocation(make: Any, server: AuthServer, caplog: Any) -> None:
    """A customer cleared after close() is forgotten at once, saying its tokens are not revoked:
    no worker starts for a plugin that refuses work."""
    plugin = plugin_for(make, server)
    pipeline = logged_in(plugin, server)
    plugin.close()
    with caplog.at_level(logging.WARNING, logger="asapp_auth_oauth2"):
        pipeline.clear()
    assert plugin.pending_revocations == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [
        f"plugin 'oauth2' is closed: the tokens of customer {logged('alice')} are forgotten "
        "without being revoked"
    ]
    assert all("alice" not in m for m in warned)  # an id (often an e-mail) is not logged
    assert server.revoked == []


def test_close_waits_at_most_its_bound(make: Any, server: AuthServer, caplog: Any) -> None:
    """close(timeout=) gives up on a revocation that never ends, says so, and closes the client."""
    plugin = plugin_for(make, server)
    pipeline = logged_in(plugin, server)
    client = plugin._transport.client
    server.stall("/revoke")
    pipeline.clear()
    assert server.wait_stalled("/revoke")
    with caplog.at_level(logging.WARNING, logger="asapp_auth_oauth2"):
        pipeline.close(timeout=0.2)
    assert server.stalled["/revoke"] == 1
    assert server.revoked == []  # close() returned while the revocation was still held
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("1 revocation(s) still pending when closed" in m for m in warned)
    server.release()
    assert plugin.close() is None  # the worker closes the client once its request is over
    assert client.is_closed


def test_close_waits_for_the_pending_revocations_to_end(make: Any, server: AuthServer) -> None:
    """Within its bound, close() returns only once the queued revocations are done."""
    plugin = plugin_for(make, server)
    pipeline = logged_in(plugin, server)
    expected = tokens_of(plugin, server)
    server.stall("/revoke")
    pipeline.clear()
    assert server.wait_stalled("/revoke")
    seen_at_return: list[set[str]] = []

    def close() -> None:
        pipeline.close(timeout=30)
        seen_at_return.append(set(server.revoked))

    closing = threading.Thread(target=close)
    closing.start()
    server.release()  # the held request ends unanswered; the worker's retry is answered
    closing.join(30)
    assert seen_at_return == [expected]
    assert plugin.pending_revocations == 0


def test_each_revocation_has_its_own_deadline(make: Any, server: AuthServer, caplog: Any) -> None:
    """revocation_timeout ends a revocation the endpoint never answers, logged without a token."""
    plugin = plugin_for(make, server, revocation_timeout=0.3)
    pipeline = logged_in(plugin, server)
    server.stall("/revoke")
    with caplog.at_level(logging.WARNING, logger="asapp_auth_oauth2"):
        pipeline.clear()
        assert server.wait_stalled("/revoke")
        plugin.close(deadline=time.monotonic() + 30)  # returns when the worker has given up
    assert plugin.pending_revocations == 0
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert f"revoking the refresh token of customer {ALICE} failed" in warned
    assert "revocation_timeout" in warned
    assert "still pending" not in warned


def test_failed_revocations_are_logged_in_plain_words(
    make: Any, server: AuthServer, caplog: Any
) -> None:
    """A revocation endpoint that refuses is logged per token kind, naming no token."""
    plugin = plugin_for(make, server, revocation_endpoint=server.base_url + "/no-such-endpoint")
    pipeline = logged_in(plugin, server)
    with caplog.at_level(logging.WARNING, logger="asapp_auth_oauth2"):
        pipeline.clear()
        pipeline.close()
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"revoking the refresh token of customer {ALICE} failed" in m for m in warned)
    assert any(f"revoking the access token of customer {ALICE} failed" in m for m in warned)
    assert not any("a access_token" in m or "a refresh_token" in m for m in warned)


def test_from_a_coroutine_clear_and_aclear_return_and_aclose_is_bounded(
    make: Any, server: AuthServer
) -> None:
    """Under asyncio neither clear nor aclear waits on the endpoint; aclose ends by its bound."""
    plugin = plugin_for(make, server)
    pipeline = logged_in(plugin, server, "alice")
    plugin.set_token("bob", server.login_token("app", "bob"))
    server.stall("/revoke")

    async def main() -> None:
        pipeline.clear()  # on the loop: returns at once all the same
        pipeline.set_customer("bob")
        await pipeline.aclear()
        assert server.wait_stalled("/revoke")
        assert plugin.pending_revocations == 2  # alice's under way, bob's queued
        await pipeline.aclose(timeout=0.2)
        assert server.revoked == []

    asyncio.run(main())
    server.release()


def test_a_closed_plugin_refuses_work(make: Any, server: AuthServer) -> None:
    """Leaving ``with`` closes the plugin's HTTP client; it then refuses, naming itself."""
    plugin = plugin_for(make, server)
    with logged_in(plugin, server) as pipeline:
        client = plugin._transport.client
        assert pipeline.get_context() is not None
    assert client.is_closed
    with pytest.raises(ProviderError, match="plugin 'oauth2' was closed"):
        plugin.provide_context(Customer("alice"), True, None)


def test_many_clears_share_one_bounded_worker(make: Any, server: AuthServer) -> None:
    """Customers cleared from 20 threads at once are revoked by one worker, every token once."""
    plugin = plugin_for(make, server)
    logins = {f"c{i}": server.login_token("app", f"c{i}") for i in range(20)}
    for customer, token in logins.items():
        plugin.set_token(customer, token)
    server.stall("/revoke")
    start = threading.Barrier(20)

    def clear(customer: str) -> None:
        start.wait(10)
        plugin.on_customer_cleared(Customer(customer))

    threads = [threading.Thread(target=clear, args=(c,)) for c in logins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert server.wait_stalled("/revoke")
    workers = [t for t in threading.enumerate() if t.name == "asapp-auth-oauth2-revoker"]
    assert len(workers) == 1
    assert plugin.pending_revocations == 20
    server.release()
    plugin.close(deadline=time.monotonic() + 60)
    expected = {t["access_token"] for t in logins.values()} | {
        t["refresh_token"] for t in logins.values()
    }
    assert sorted(server.revoked) == sorted(expected)


def issued_since(server: AuthServer, before: set[str]) -> list[Any]:
    """The tokens the server issued that are not in ``before`` (access tokens)."""
    return [t for t in server.by_access.values() if t.access_token not in before]


def test_tokens_answered_after_their_customer_was_cleared_are_revoked_not_kept(
    make: Any, server: AuthServer
) -> None:
    """A refresh the server answers once the customer is cleared: its new access and refresh
    tokens are revoked with the old one, and neither kept nor handed to on_refresh_token."""
    saved: list[str] = []
    plugin = plugin_for(make, server, on_refresh_token=lambda customer, token: saved.append(token))
    old = server.login("app", "alice")
    plugin.set_refresh_token("alice", old)
    before = set(server.by_access)
    server.stall("/token", answered=True)
    got: list[tuple[str, float]] = []
    fetching = threading.Thread(target=lambda: got.append(plugin.get_token("alice")))
    fetching.start()
    assert server.wait_stalled("/token")  # the server has issued the new tokens ...
    plugin.on_customer_cleared(Customer("alice"))  # ... and the customer is cleared meanwhile
    server.release()
    fetching.join(30)
    plugin.close(deadline=time.monotonic() + 30)
    [new] = issued_since(server, before)
    assert [token for token, _ in got] == [new.access_token]
    assert sorted(server.revoked) == sorted([old, new.access_token, new.refresh_token])
    assert "alice" not in plugin._tokens.refresh_tokens
    assert saved == []
    assert plugin.granted_scope("alice") is None


def test_a_forgotten_customers_late_tokens_are_dropped_unrevoked(
    make: Any, server: AuthServer
) -> None:
    """forget() while a refresh is answered: the new tokens are not kept, nor revoked."""
    plugin = plugin_for(make, server)
    plugin.set_refresh_token("alice", server.login("app", "alice"))
    server.stall("/token", answered=True)
    fetching = threading.Thread(target=plugin.get_token, args=("alice",))
    fetching.start()
    assert server.wait_stalled("/token")
    plugin.forget("alice")
    server.release()
    fetching.join(30)
    plugin.close(deadline=time.monotonic() + 30)
    assert server.revoked == []
    assert "alice" not in plugin._tokens.refresh_tokens
    assert plugin.pending_revocations == 0
