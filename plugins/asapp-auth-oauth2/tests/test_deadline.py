"""The pipeline's deadline bounds the plugin's whole retry budget: a token endpoint that accepts
and never answers (stalled until the test releases it) ends at provider_timeout with the
documented ProviderTimeoutError, not after attempts x timeout + backoff."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from asapp_auth_oauth2 import TokenEndpointTimeoutError, TokenEndpointUnavailableError
from authserver import AuthServer, Client

from asapp_auth import AuthPipeline, Customer
from asapp_auth.errors import ProviderTimeoutError

SECRET = "deadline-client-secret"
# Four attempts of 2 s each, plus backoff: far past the pipeline's half second.
SLOW_BUDGET = {"timeout": 2.0, "max_retries": 3, "backoff_base": 0.2}


@pytest.fixture
def server(auth: AuthServer) -> AuthServer:
    auth.add_client(
        Client(
            "app",
            "client_secret_basic",
            ("client_credentials", "refresh_token"),
            secret=SECRET,
        )
    )
    return auth


def plugin_for(make: Any, server: AuthServer, **extra: Any) -> Any:
    return make(
        token_endpoint=server.token_url,
        client_id="app",
        client_secret=SECRET,
        **{**SLOW_BUDGET, **extra},
    )


def pipeline_with(plugin: Any) -> AuthPipeline:
    pipeline = AuthPipeline(origins=["https://platform.example"], provider_timeout=0.5)
    pipeline.register(plugin, name="oauth2")
    pipeline.load(customer_id="alice")
    return pipeline


def join_provider_threads() -> None:
    for thread in threading.enumerate():
        if thread.name == "asapp-auth-provider":
            thread.join(30)


def test_a_hanging_token_endpoint_ends_at_provider_timeout(make: Any, server: AuthServer) -> None:
    """A sync request gets ProviderTimeoutError after one attempt cut at the deadline."""
    server.stall("/token")
    pipeline = pipeline_with(plugin_for(make, server))
    with pytest.raises(ProviderTimeoutError) as caught:
        pipeline.get_context()
    error = caught.value
    assert isinstance(error, TokenEndpointTimeoutError)
    assert isinstance(error, TokenEndpointUnavailableError)  # what callers caught before
    assert error.attempts == 1
    # Counted by the server's handler thread, which a loaded machine may run after the timeout.
    assert server.wait_stalled("/token")
    assert server.stalled["/token"] == 1
    assert server.token_url in str(error)
    assert "provider_timeout" in str(error)
    server.release()
    context = pipeline.get_context()  # nothing was poisoned: the next request asks again
    assert context is not None
    assert context.token in server.by_access


def test_under_asyncio_the_provider_thread_stops_retrying_at_the_deadline(
    make: Any, server: AuthServer
) -> None:
    """The worker thread behind a timed-out task makes no attempt past the deadline."""
    server.stall("/token")
    pipeline = pipeline_with(plugin_for(make, server))

    async def main() -> None:
        await asyncio.gather(*(pipeline.aget_context() for _ in range(10)))

    with pytest.raises(ProviderTimeoutError):
        asyncio.run(main())
    join_provider_threads()
    assert server.wait_stalled("/token")
    assert server.stalled["/token"] == 1


def test_a_refresh_token_cut_by_the_deadline_says_it_may_be_spent(
    make: Any, server: AuthServer
) -> None:
    """A rotating refresh token's request cut short is reported as maybe acted on."""
    server.stall("/token")
    plugin = plugin_for(make, server, grant="refresh_token")
    plugin.set_refresh_token("alice", server.login("app", "alice"))
    assert plugin._transport.client is not None  # made (CA bundle loaded) before the deadline
    # Long enough for a loaded machine to send the request: the server never answers it.
    with pytest.raises(TokenEndpointTimeoutError, match="may have acted on it") as caught:
        plugin.provide_context(Customer("alice"), False, None, deadline=time.monotonic() + 2)
    assert caught.value.attempts == 1
    assert server.wait_stalled("/token")
    assert server.stalled["/token"] == 1


def test_waiting_for_another_customers_fetch_of_the_shared_token_is_bounded(
    make: Any, server: AuthServer
) -> None:
    """A customer waiting on the shared token's fetch gives up at its own deadline."""
    server.stall("/token")
    plugin = plugin_for(make, server, timeout=30.0)
    first: list[Any] = []
    fetching = threading.Thread(
        target=lambda: first.append(
            plugin.provide_context(Customer("a"), False, None, deadline=time.monotonic() + 60)
        )
    )
    fetching.start()
    assert server.wait_stalled("/token")
    with pytest.raises(ProviderTimeoutError, match="still being fetched for another request"):
        plugin.provide_context(Customer("b"), False, None, deadline=time.monotonic() + 0.2)
    server.release()  # the first fetch's connection closes unanswered; its retry gets a token
    fetching.join(30)
    assert len(first) == 1
    assert first[0].token in server.by_access


def test_a_hanging_metadata_endpoint_is_a_timeout_too(make: Any, server: AuthServer) -> None:
    """Discovery cut at the deadline raises ProviderTimeoutError, not a DiscoveryError."""
    server.stall("/.well-known/oauth-authorization-server")
    plugin = make(issuer=server.base_url, client_id="app", client_secret=SECRET, **SLOW_BUDGET)
    with pytest.raises(TokenEndpointTimeoutError, match="metadata endpoint"):
        plugin.provide_context(Customer("a"), False, None, deadline=time.monotonic() + 0.3)
    server.release()
    assert plugin.provide_context(Customer("a"), False, None).token in server.by_access
