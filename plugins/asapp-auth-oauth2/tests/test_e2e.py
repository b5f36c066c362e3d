"""End to end against a real authorization server (authlib's server components) on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from asapp_auth_oauth2 import (
    InvalidClientError,
    SessionGoneError,
    UnauthorizedClientError,
)
from authserver import EXCHANGE, JWT_BEARER, AuthServer, Client
from conftest import SECRETS

from asapp_auth import AuthContext, Customer
from asapp_auth.errors import LoginRequiredError, ProviderError

ALL_GRANTS = ("client_credentials", "refresh_token", EXCHANGE, JWT_BEARER)
SECRET = "s3cr:et+/ %&é=="  # reserved characters, to prove the Basic encoding


def client_for(auth: AuthServer, method: str, signer: Any = None, cid: str = "app") -> Client:
    return auth.add_client(
        Client(
            client_id=cid,
            auth_method=method,
            grant_types=ALL_GRANTS,
            secret=SECRET if method.startswith("client_secret") else None,
            public_jwk=None if signer is None else signer.public_jwk(),
        )
    )


def settings_for(auth: AuthServer, method: str, signer: Any = None, **extra: Any) -> dict:
    settings: dict[str, Any] = {
        "token_endpoint": auth.token_url,
        "client_id": "app",
        "client_auth": method,
        **extra,
    }
    if method.startswith("client_secret"):
        settings["client_secret"] = SECRET
    if signer is not None:
        settings["signer"] = signer
    return settings


def token_of(context: AuthContext) -> str:
    token = context.token
    assert token is not None
    return token


METHODS = ["client_secret_basic", "client_secret_post", "none", "private_key_jwt"]


@pytest.mark.parametrize("method", METHODS)
def test_client_credentials_with_each_client_auth(
    make: Any, auth: AuthServer, method: str, signer: Any
) -> None:
    """Every client authentication method gets a client-credentials token the server issued."""
    use_signer = signer if method == "private_key_jwt" else None
    client_for(auth, method, use_signer)
    plugin = make(**settings_for(auth, method, use_signer, scope="read write"))
    context = plugin.provide_context(Customer("alice"), False, None)
    assert token_of(context) in auth.by_access
    assert auth.by_access[token_of(context)].scope == "read write"
    assert context.expires_in is not None
    assert 3590 < context.expires_in <= 3600
    assert auth.calls["client_credentials"] == 1


@pytest.mark.parametrize("method", METHODS)
def test_refresh_token_with_each_client_auth(
    make: Any, auth: AuthServer, method: str, signer: Any
) -> None:
    """A seeded refresh token is exchanged, rotated, and the new one is used next time."""
    use_signer = signer if method == "private_key_jwt" else None
    client_for(auth, method, use_signer)
    seed = auth.login("app", "alice")
    plugin = make(**settings_for(auth, method, use_signer, grant="refresh_token"))
    plugin.set_refresh_token("alice", seed)
    first = token_of(plugin.provide_context(Customer("alice"), False, None))
    second = token_of(plugin.provide_context(Customer("alice"), True, None))
    assert first != second
    assert auth.by_access[second].user == "alice"
    sent = [form["refresh_token"][0] for form in auth.forms]
    assert sent[0] == seed
    assert len(set(sent)) == 2  # the rotated token was never sent again
    assert auth.refused_refresh == []


@pytest.mark.parametrize("method", METHODS)
def test_token_exchange_with_each_client_auth(
    make: Any, auth: AuthServer, method: str, signer: Any
) -> None:
    """The customer's site session token is exchanged, with audience, resource and scope sent."""
    use_signer = signer if method == "private_key_jwt" else None
    client_for(auth, method, use_signer)
    sessions = {"alice": auth.site_login("alice")}
    plugin = make(
        **settings_for(
            auth,
            method,
            use_signer,
            grant="token_exchange",
            subject_token_for=sessions.get,
            audience=["chat-api", "other"],
            resource="https://api.example/",
            scope="read",
        )
    )
    token = token_of(plugin.provide_context(Customer("alice"), False, None))
    assert auth.by_access[token].user == "alice"
    form = auth.forms[0]
    assert form["audience"] == ["chat-api", "other"]
    assert form["resource"] == ["https://api.example/"]
    assert form["scope"] == ["read"]
    assert form["subject_token_type"] == ["urn:ietf:params:oauth:token-type:access_token"]


def test_jwt_bearer_grant(make: Any, auth: AuthServer, signer: Any) -> None:
    """A JWT bearer assertion for the customer, signed by the signer, gets that customer a token."""
    client_for(auth, "none", signer)
    auth.users.add("alice")
    plugin = make(**settings_for(auth, "none", signer, grant="jwt_bearer", scope="read"))
    token = token_of(plugin.provide_context(Customer("alice"), False, None))
    assert auth.by_access[token].user == "alice"
    assert auth.calls[JWT_BEARER] == 1


def test_private_key_jwt_uses_a_fresh_jti_each_time(
    make: Any, auth: AuthServer, signer: Any
) -> None:
    """Each request carries a new client assertion (the server refuses a reused jti)."""
    client_for(auth, "private_key_jwt", signer)
    plugin = make(**settings_for(auth, "private_key_jwt", signer))
    tokens = {token_of(plugin.provide_context(Customer("a"), True, None)) for _ in range(3)}
    assert len(tokens) == 3
    assertions = [form["client_assertion"][0] for form in auth.forms]
    assert len(set(assertions)) == 3


def test_wrong_secret_is_invalid_client(make: Any, auth: AuthServer) -> None:
    """A wrong client secret raises InvalidClientError naming the endpoint, never the secret."""
    client_for(auth, "client_secret_basic")
    settings = settings_for(auth, "client_secret_basic")
    settings["client_secret"] = "wrong-secret-value"
    SECRETS.add("wrong-secret-value")
    plugin = make(**settings)
    with pytest.raises(InvalidClientError) as caught:
        plugin.provide_context(Customer("alice"), False, None)
    assert caught.value.error == "invalid_client"
    assert auth.token_url in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value) + repr(caught.value)


def test_grant_not_allowed_is_unauthorized_client(make: Any, auth: AuthServer) -> None:
    """A grant the client may not use raises UnauthorizedClientError."""
    auth.add_client(Client("app", "client_secret_post", ("refresh_token",), secret=SECRET))
    plugin = make(**settings_for(auth, "client_secret_post"))
    with pytest.raises(UnauthorizedClientError):
        plugin.provide_context(Customer("alice"), False, None)


def test_shared_token_is_fetched_once_for_many_customers(make: Any, auth: AuthServer) -> None:
    """The client-credentials token is shared: many customers cost one token-endpoint call."""
    client_for(auth, "client_secret_basic")
    plugin = make(**settings_for(auth, "client_secret_basic"))
    tokens = {token_of(plugin.provide_context(Customer(f"c{i}"), False, None)) for i in range(50)}
    assert len(tokens) == 1
    assert auth.token_calls == 1


def test_rejected_shared_token_is_replaced_once(make: Any, auth: AuthServer) -> None:
    """When every customer's copy of the shared token is rejected, one new token is fetched."""
    client_for(auth, "client_secret_basic")
    plugin = make(**settings_for(auth, "client_secret_basic"))
    old = {token_of(plugin.provide_context(Customer(f"c{i}"), False, None)) for i in range(5)}
    new = {token_of(plugin.provide_context(Customer(f"c{i}"), True, None)) for i in range(5)}
    assert len(old) == len(new) == 1
    assert old != new
    assert auth.token_calls == 2


def test_refetch_sends_the_same_parameters(make: Any, auth: AuthServer) -> None:
    """A re-fetch sends exactly the parameters of the first fetch."""
    client_for(auth, "client_secret_post")
    plugin = make(
        **settings_for(
            auth,
            "client_secret_post",
            scope=["read", "write"],
            audience="aud",
            resource="https://api.example/",
        )
    )
    plugin.provide_context(Customer("a"), False, None)
    plugin.provide_context(Customer("a"), True, None)
    assert len(auth.forms) == 2
    assert auth.forms[0] == auth.forms[1]
    assert auth.forms[0]["scope"] == ["read write"]


def test_token_is_refetched_after_expiry(make: Any, auth: AuthServer) -> None:
    """An expired token is not served: the next request fetches a new one."""
    auth.lifetime = 1
    client_for(auth, "client_secret_basic")
    plugin = make(**settings_for(auth, "client_secret_basic"))
    first = plugin.provide_context(Customer("a"), False, None)
    assert first.expires_in is not None
    assert first.expires_in <= 1
    assert token_of(plugin.provide_context(Customer("b"), False, None)) == token_of(first)
    time.sleep(1.0)
    assert token_of(plugin.provide_context(Customer("b"), False, None)) != token_of(first)
    assert auth.token_calls == 2


def test_invalid_grant_on_refresh_means_login_required(make: Any, auth: AuthServer) -> None:
    """A refused refresh token raises LoginRequiredError and is never sent again."""
    client_for(auth, "client_secret_basic")
    seed = auth.login("app", "alice")
    auth.by_refresh[seed].revoked = True
    plugin = make(
        **settings_for(auth, "client_secret_basic", grant="refresh_token"),
        refresh_token_for=lambda cid: seed,
    )
    with pytest.raises(LoginRequiredError) as caught:
        plugin.provide_context(Customer("alice"), False, None)
    assert isinstance(caught.value, SessionGoneError)
    assert caught.value.customer_id == "alice"
    assert seed not in str(caught.value)
    with pytest.raises(SessionGoneError):
        plugin.provide_context(Customer("alice"), False, None)
    assert auth.token_calls == 1


def test_rotated_token_from_the_app_is_not_sent_twice(make: Any, auth: AuthServer) -> None:
    """A refresh token already rotated away is refused locally even if the app gives it again."""
    client_for(auth, "client_secret_basic")
    seed = auth.login("app", "alice")
    plugin = make(**settings_for(auth, "client_secret_basic", grant="refresh_token"))
    plugin.set_refresh_token("alice", seed)
    plugin.provide_context(Customer("alice"), False, None)
    plugin.forget("alice")
    with pytest.raises(SessionGoneError):
        plugin.provide_context(Customer("alice"), False, None)  # no refresh token at all now
    plugin2_calls = auth.token_calls
    plugin._tokens.refresh_tokens["alice"] = seed  # as if the app's store gave the old one back
    with pytest.raises(SessionGoneError, match="never sent twice"):
        plugin.provide_context(Customer("alice"), False, None)
    assert auth.token_calls == plugin2_calls


def test_rotated_refresh_token_is_given_to_the_app(make: Any, auth: AuthServer) -> None:
    """on_refresh_token receives each new refresh token, so the app can persist it."""
    client_for(auth, "client_secret_basic")
    saved: dict[str, str] = {}
    plugin = make(
        **settings_for(auth, "client_secret_basic", grant="refresh_token"),
        on_refresh_token=saved.__setitem__,
    )
    plugin.set_refresh_token("alice", auth.login("app", "alice"))
    plugin.provide_context(Customer("alice"), False, None)
    assert saved["alice"] in auth.by_refresh
    assert not auth.by_refresh[saved["alice"]].revoked


def test_without_rotation_the_refresh_token_is_kept(make: Any, auth: AuthServer) -> None:
    """A server that does not rotate lets the same refresh token be used again."""
    auth.rotate = False
    client_for(auth, "client_secret_basic")
    seed = auth.login("app", "alice")
    plugin = make(**settings_for(auth, "client_secret_basic", grant="refresh_token"))
    plugin.set_refresh_token("alice", seed)
    plugin.provide_context(Customer("alice"), False, None)
    plugin.provide_context(Customer("alice"), True, None)
    assert [f["refresh_token"][0] for f in auth.forms] == [seed, seed]


def test_invalid_site_session_on_exchange_means_login_required(make: Any, auth: AuthServer) -> None:
    """A site session the server refuses raises LoginRequiredError for that customer."""
    client_for(auth, "client_secret_basic")
    SECRETS.add("site-not-a-session")
    plugin = make(
        **settings_for(auth, "client_secret_basic", grant="token_exchange"),
        subject_token_for=lambda cid: "site-not-a-session",
    )
    with pytest.raises(SessionGoneError) as caught:
        plugin.provide_context(Customer("alice"), False, None)
    assert "site-not-a-session" not in str(caught.value)


def test_discovery_is_fetched_once(make: Any, auth: AuthServer) -> None:
    """With only an issuer, the token endpoint is discovered (RFC 8414) once and reused."""
    client_for(auth, "client_secret_basic")
    settings = settings_for(auth, "client_secret_basic")
    del settings["token_endpoint"]
    plugin = make(**settings, issuer=auth.base_url)
    for i in range(5):
        plugin.provide_context(Customer(f"c{i}"), True, None)
    assert plugin._discovery is not None
    assert plugin._discovery.fetches == 1
    assert plugin.token_endpoint() == auth.token_url
    assert plugin.revocation_endpoint() == auth.base_url + "/revoke"
    assert auth.calls["client_credentials"] == 1  # other customers share the token


def test_revocation_revokes_the_customer_tokens(make: Any, auth: AuthServer) -> None:
    """A cleared customer's refresh and access tokens go to the RFC 7009 endpoint, forgotten."""
    client_for(auth, "client_secret_basic")
    plugin = make(
        **settings_for(auth, "client_secret_basic", grant="refresh_token"),
        revocation_endpoint=auth.base_url + "/revoke",
        revoke_on_clear=True,
    )
    plugin.set_refresh_token("alice", auth.login("app", "alice"))
    access = token_of(plugin.provide_context(Customer("alice"), False, None))
    refresh = plugin._tokens.refresh_tokens["alice"]
    plugin.on_customer_cleared(Customer("alice"))
    with pytest.raises(SessionGoneError):  # forgotten at once
        plugin.provide_context(Customer("alice"), False, None)
    plugin.close()  # waits for the queued revocation
    assert set(auth.revoked) == {access, refresh}
    assert auth.by_access[access].revoked
    assert auth.by_refresh[refresh].revoked


def test_through_the_pipeline(make: Any, auth: AuthServer) -> None:
    """The pipeline puts the plugin's token on requests to the platform as a Bearer token."""
    from asapp_auth.pipeline import AuthPipeline

    client_for(auth, "client_secret_basic")
    plugin = make(**settings_for(auth, "client_secret_basic"))
    pipeline = AuthPipeline(origins=["https://platform.example"])
    pipeline.register(plugin, name="oauth2")
    pipeline.load(customer_id="alice")
    seen: list[str] = []

    def platform(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={})

    with httpx.Client(auth=pipeline, transport=httpx.MockTransport(platform)) as client:
        client.get("https://platform.example/api")
        client.get("https://platform.example/api")
    token = next(iter(auth.by_access))
    assert seen == [f"Bearer {token}"] * 2
    assert auth.token_calls == 1


def test_pipeline_clear_revokes_through_on_customer_cleared(make: Any, auth: AuthServer) -> None:
    """pipeline.clear() reaches the plugin's on_customer_cleared hook, which revokes (RFC 7009)."""
    from asapp_auth.pipeline import AuthPipeline

    client_for(auth, "client_secret_basic")
    plugin = make(
        **settings_for(auth, "client_secret_basic", grant="refresh_token"),
        revocation_endpoint=auth.base_url + "/revoke",
        revoke_on_clear=True,
    )
    pipeline = AuthPipeline(origins=["https://platform.example"])
    pipeline.register(plugin, name="oauth2")
    plugin.set_refresh_token("alice", auth.login("app", "alice"))
    pipeline.load(customer_id="alice")
    access = token_of(pipeline.get_context())
    refresh = plugin._tokens.refresh_tokens["alice"]
    pipeline.clear()
    assert pipeline.get_context() is None
    pipeline.close()  # waits for the revocation the plugin queued
    assert set(auth.revoked) == {access, refresh}


def test_a_given_token_endpoint_wins_over_the_issuers(make: Any, auth: AuthServer) -> None:
    """With both ``token_endpoint`` and ``issuer``, tokens come from ``token_endpoint`` without
    fetching the issuer's metadata, which serves only what is not set (the revocation endpoint)."""
    from authserver import start

    elsewhere = AuthServer()
    running = start(elsewhere)
    try:
        client_for(elsewhere, "client_secret_basic")
        plugin = make(**settings_for(elsewhere, "client_secret_basic"), issuer=auth.base_url)
        context = plugin.provide_context(Customer("alice"), False, None)
        assert token_of(context) in elsewhere.by_access
        assert (elsewhere.calls["client_credentials"], auth.token_calls) == (1, 0)
        assert plugin.token_endpoint() == elsewhere.token_url
        assert plugin._discovery is not None
        assert plugin._discovery.fetches == 0
        assert plugin.revocation_endpoint() == auth.base_url + "/revoke"
        assert plugin._discovery.fetches == 1
    finally:
        SECRETS.update(elsewhere.secrets)
        running.stop()


def test_a_subject_token_of_the_wrong_type_is_named_with_its_article(
    make: Any, auth: AuthServer
) -> None:
    """A subject_token_for that returns an int is said to return "an int", never "a int"."""
    client_for(auth, "client_secret_basic")
    plugin = make(
        **settings_for(auth, "client_secret_basic", grant="token_exchange"),
        subject_token_for=lambda cid: 5,
    )
    with pytest.raises(ProviderError, match="subject_token_for returned an int, not"):
        plugin.provide_context(Customer("alice"), False, None)
    assert auth.forms == []
