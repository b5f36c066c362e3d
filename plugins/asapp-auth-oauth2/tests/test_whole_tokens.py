"""Whole tokens: a login's token response seeded as it is, whole new tokens handed to the app,
and the granted scope, against the real authorization server."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest
from asapp_auth_oauth2 import TokenResponseError
from authserver import AuthServer, Client
from conftest import SECRETS

from asapp_auth import AuthPipeline, Customer
from asapp_auth.errors import ProviderError

SECRET = "whole-token-client-secret"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@pytest.fixture
def server(auth: AuthServer) -> AuthServer:
    auth.add_client(
        Client(
            "app",
            "client_secret_basic",
            ("refresh_token", "client_credentials"),
            secret=SECRET,
            scope="read write",
        )
    )
    return auth


def plugin_for(make: Any, server: AuthServer, **extra: Any) -> Any:
    settings = {
        "token_endpoint": server.token_url,
        "client_id": "app",
        "client_secret": SECRET,
        "grant": "refresh_token",
        "revocation_endpoint": server.base_url + "/revoke",
        **extra,
    }
    return make(**settings)


def test_a_seeded_whole_token_is_used_before_its_refresh_token(
    make: Any, server: AuthServer
) -> None:
    """The first request carries the login's access token; the refresh token waits for expiry."""
    login = server.login_token("app", "alice", scope="read write")
    plugin = plugin_for(make, server)
    plugin.set_token("alice", login)
    pipeline = AuthPipeline(origins=["https://platform.example"])
    pipeline.register(plugin, name="oauth2")
    pipeline.load(customer_id="alice")
    context = pipeline.get_context()
    assert context is not None
    assert context.token == login["access_token"]
    assert context.expires_in is not None
    assert 3590 < context.expires_in <= 3600
    assert server.token_calls == 0
    assert plugin.token_endpoint_calls == 0
    refreshed = pipeline.get_context(needs_refresh=True)
    assert refreshed is not None
    assert refreshed.token != login["access_token"]
    assert [form["refresh_token"] for form in server.forms] == [[login["refresh_token"]]]


def test_an_expired_access_token_is_dropped_and_its_refresh_token_kept(
    make: Any, server: AuthServer
) -> None:
    """A kept token whose expires_at has passed costs one refresh with its refresh token."""
    login = server.login_token("app", "alice")
    plugin = plugin_for(make, server)
    plugin.set_token("alice", {**login, "expires_at": int(time.time()) - 5})
    token = plugin.provide_context(Customer("alice"), False, None).token
    assert token != login["access_token"]
    assert server.by_access[token].user == "alice"
    assert [form["refresh_token"] for form in server.forms] == [[login["refresh_token"]]]


def test_on_token_gets_each_whole_new_token_and_it_seeds_a_new_process(
    make: Any, server: AuthServer
) -> None:
    """on_token receives the rotated whole token; set_token in another plugin reuses it as is."""
    kept: dict[str, dict[str, Any]] = {}
    plugin = plugin_for(make, server, on_token=kept.__setitem__)
    plugin.set_refresh_token("alice", server.login("app", "alice", scope="read write"))
    token = plugin.provide_context(Customer("alice"), False, None).token
    saved = kept["alice"]
    assert saved["access_token"] == token
    assert saved["token_type"] == "Bearer"
    assert saved["scope"] == "read write"
    assert saved["refresh_token"] in server.by_refresh
    assert not server.by_refresh[saved["refresh_token"]].revoked
    assert abs(saved["expires_at"] - (time.time() + saved["expires_in"])) < 5
    calls = server.token_calls

    restarted = plugin_for(make, server)
    restarted.set_token("alice", saved)
    assert restarted.provide_context(Customer("alice"), False, None).token == token
    assert server.token_calls == calls
    assert restarted.provide_context(Customer("alice"), True, None).token != token
    assert server.forms[-1]["refresh_token"] == [saved["refresh_token"]]


def test_granted_scope_is_the_servers_or_the_requested_one(make: Any, server: AuthServer) -> None:
    """granted_scope names what the server granted, or what was asked when it said nothing."""
    plugin = plugin_for(make, server, grant="client_credentials", scope="read write admin")
    assert plugin.granted_scope() is None
    plugin.provide_context(Customer("alice"), False, None)
    assert plugin.granted_scope() == {"read", "write"}  # admin is not this client's

    per_customer = plugin_for(make, server, scope="read")
    assert per_customer.granted_scope("bob") is None
    login = server.login_token("app", "bob", scope="read")
    del login["scope"]
    per_customer.set_token("bob", login)
    assert per_customer.granted_scope("bob") == {"read"}


def test_clear_revokes_a_seeded_token_never_used(make: Any, server: AuthServer) -> None:
    """A seeded access token and refresh token are the customer's: revoke() revokes both."""
    login = server.login_token("app", "alice")
    plugin = plugin_for(make, server)
    plugin.set_token("alice", login)
    assert plugin.revoke("alice") == 2
    assert set(server.revoked) == {login["access_token"], login["refresh_token"]}


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ({"token_type": "Bearer", "expires_in": 60}, "access_token is missing"),
        ({"access_token": "seeded-at", "token_type": "mac"}, "not Bearer"),
        ({"access_token": "seeded-at", "token_type": "Bearer", "expires_at": "soon"}, "epoch"),
        (
            {"access_token": "seeded-at", "token_type": "Bearer", "expires_at": 1},
            "no refresh token",
        ),
        (["seeded-at"], "mapping"),
        # Types are named as the core names them (asapp_auth.errors.type_with_article).
        (b"seeded-at", "as a mapping, not bytes$"),
        (
            {"access_token": "seeded-at", "token_type": "Bearer", "expires_at": LOOPBACK},
            "its expires_at is an IPv4Address,",
        ),
    ],
)
def test_bad_whole_tokens_are_refused_naming_the_plugin(
    make: Any, server: AuthServer, token: Any, words: str
) -> None:
    """A token set_token cannot use raises a ProviderError naming the plugin, not the token."""
    SECRETS.add("seeded-at")
    plugin = plugin_for(make, server)
    with pytest.raises(ProviderError, match=words) as caught:
        plugin.set_token("alice", token)
    assert "plugin 'oauth2'" in str(caught.value)
    assert "seeded-at" not in str(caught.value)
    assert plugin.granted_scope("alice") is None


def test_a_refused_whole_token_is_a_token_response_error(make: Any, server: AuthServer) -> None:
    """A token with a bad field is refused as the plugin refuses a bad server answer."""
    plugin = plugin_for(make, server)
    with pytest.raises(TokenResponseError, match="set_token"):
        plugin.set_token("alice", {"access_token": "x y", "token_type": "Bearer"})


def test_set_token_is_refused_for_the_shared_grant(make: Any, server: AuthServer) -> None:
    """client_credentials tokens are the client's: set_token says so instead of seeding one."""
    plugin = plugin_for(make, server, grant="client_credentials")
    with pytest.raises(ProviderError, match="per-customer grants"):
        plugin.set_token("alice", {"access_token": "abc", "token_type": "Bearer"})
