"""The plugin's own login, in the browser with a loopback redirect (authorization code + PKCE,
RFC 8252), against the real authorization server: its login page is driven without a browser."""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asapp_auth_oauth2 import (
    LoginDeniedError,
    LoginError,
    LoginTimeoutError,
    StateMismatchError,
)
from loginserver import LoginServer

from asapp_auth import AuthPipeline
from asapp_auth.errors import ConfigurationError, LoginRequiredError


class Browser:
    """Plays the customer's browser: opens the login page and follows its redirect back to the
    loopback server, recording what it was asked to open and what the app's page answered. Like
    a real browser it writes nothing to the app's log (the URLs hold the code and state)."""

    def __init__(self, before: str | None = None) -> None:
        self.opened: list[str] = []
        self.pages: list[int] = []
        self.before = before  # a path of the loopback server to visit first (a stray request)

    def __call__(self, url: str) -> bool:
        self.opened.append(url)
        _status, location = browse(url)
        if location is None:
            return True
        if self.before is not None:
            parts = urlsplit(location)
            browse(f"{parts.scheme}://{parts.netloc}{self.before}")
        self.pages.append(browse(location)[0])
        return True

    def sent(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.opened[-1]).query).items()}


def browse(url: str) -> tuple[int, str | None]:
    """GET ``url`` as a browser would, without following a redirect: (status, Location)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location")
    finally:
        connection.close()


def plugin_for(make: Any, server: LoginServer, **extra: Any) -> Any:
    settings: dict[str, Any] = {
        "issuer": server.base_url,
        "client_id": "app",
        "login": "loopback",
        "scope": "openid read",
        "open_browser": Browser(),
        **extra,
    }
    return make(**settings)


def pipeline_for(plugin: Any, server: LoginServer, **kwargs: Any) -> AuthPipeline:
    pipeline = AuthPipeline(origins=[server.base_url], **kwargs)
    pipeline.register(plugin, name="oauth2")
    return pipeline


def me(pipeline: AuthPipeline, server: LoginServer) -> httpx.Response:
    with httpx.Client(auth=pipeline) as client:
        return client.get(f"{server.base_url}/api/me")


def assert_no_secret(error: BaseException, server: LoginServer) -> None:
    shown = f"{error} {error!r}"
    leaked = [s for s in server.secrets if len(s) >= 6 and s in shown]
    assert not leaked


def test_a_request_that_needs_a_login_logs_in_through_the_browser_and_goes_on(
    make: Any, login_server: LoginServer
) -> None:
    """An anonymous 401 runs the loopback login; the request goes on as the ID token's sub,
    with the login's own access token: no token endpoint call beyond the code exchange."""
    plugin = plugin_for(make, login_server)
    pipeline = pipeline_for(plugin, login_server)
    response = me(pipeline, login_server)
    assert response.json() == {"user": "alice"}
    assert pipeline.customer is not None
    assert pipeline.customer.id == "alice"
    assert dict(login_server.calls) == {"authorization_code": 1, "metadata": 0}
    assert plugin.login.open_browser.pages == [200]


def test_the_authorization_request_follows_rfc_8252_and_pkce_s256(
    make: Any, login_server: LoginServer
) -> None:
    """The request names a loopback IP redirect on an ephemeral port, a fresh state and nonce,
    and an S256 challenge that the code exchange's verifier answers."""
    plugin = plugin_for(make, login_server)
    me(pipeline_for(plugin, login_server), login_server)
    sent = plugin.login.open_browser.sent()
    redirect = urlsplit(sent["redirect_uri"])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert redirect.port not in (None, 0)
    assert sent["response_type"] == "code"
    assert sent["code_challenge_method"] == "S256"
    assert len(sent["state"]) >= 32
    assert len(sent["nonce"]) >= 32
    exchange = login_server.forms[-1]
    verifier = exchange["code_verifier"][0]
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert sent["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert exchange["redirect_uri"] == [sent["redirect_uri"]]
    assert "client_secret" not in exchange


def test_the_logins_refresh_token_renews_the_access_token(
    make: Any, login_server: LoginServer
) -> None:
    """After the login, a refresh spends the login's refresh token, once."""
    plugin = plugin_for(make, login_server)
    pipeline = pipeline_for(plugin, login_server)
    me(pipeline, login_server)
    (issued,) = [t for t in login_server.by_access.values() if t.user == "alice"]
    context = pipeline.get_context(needs_refresh=True)
    assert context is not None
    assert context.token != issued.access_token
    assert login_server.calls["refresh_token"] == 1
    assert login_server.forms[-1]["refresh_token"] == [issued.refresh_token]


def test_a_session_gone_later_logs_the_customer_in_again(
    make: Any, login_server: LoginServer
) -> None:
    """When the server refuses the tokens and the refresh token, the plugin logs in again."""
    plugin = plugin_for(make, login_server)
    pipeline = pipeline_for(plugin, login_server)
    me(pipeline, login_server)
    for token in list(login_server.by_access.values()):
        token.revoked = True
    assert me(pipeline, login_server).json() == {"user": "alice"}
    assert len(plugin.login.open_browser.opened) == 2
    assert login_server.calls["authorization_code"] == 2


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("forged-by-a-web-page", "carried another state than the"),
        ("", "carried no state, unlike the"),
    ],
)
def test_a_redirect_with_another_state_is_refused(
    make: Any, login_server: LoginServer, state: str, said: str
) -> None:
    """A redirect whose state is not this login's, or that has none, is refused, naming the
    redirect URI, and its code is never exchanged."""
    login_server.redirect_state = state
    plugin = plugin_for(make, login_server)
    pipeline = pipeline_for(plugin, login_server)
    with pytest.raises(StateMismatchError) as caught:
        me(pipeline, login_server)
    assert caught.value.endpoint.startswith("http://127.0.0.1:")
    assert caught.value.error == "state_mismatch"
    assert said in str(caught.value)
    assert login_server.calls["authorization_code"] == 0
    assert pipeline.customer is None
    assert plugin.login.open_browser.pages == [400]
    assert_no_secret(caught.value, login_server)


def test_a_refusal_with_another_state_is_a_state_mismatch(
    make: Any, login_server: LoginServer
) -> None:
    """An access_denied redirect with another state is refused as not this login's: a page that
    forges the refusal cannot pass for the customer's answer."""
    login_server.login_as = None
    login_server.redirect_state = "forged-by-a-web-page"
    pipeline = pipeline_for(plugin_for(make, login_server), login_server)
    with pytest.raises(StateMismatchError) as caught:
        me(pipeline, login_server)
    assert caught.value.error == "state_mismatch"
    assert caught.value.endpoint.startswith("http://127.0.0.1:")
    assert_no_secret(caught.value, login_server)


def test_a_refused_authorization_is_a_login_denied_error(
    make: Any, login_server: LoginServer
) -> None:
    """The customer refusing (access_denied) fails the waiting request at once, typed."""
    login_server.login_as = None
    pipeline = pipeline_for(plugin_for(make, login_server), login_server)
    with pytest.raises(LoginDeniedError) as caught:
        me(pipeline, login_server)
    assert caught.value.error == "access_denied"
    assert caught.value.endpoint == f"{login_server.base_url}/authorize"
    assert isinstance(caught.value, LoginRequiredError)
    assert_no_secret(caught.value, login_server)


def test_the_rfc_9207_issuer_of_the_redirect_is_checked(
    make: Any, login_server: LoginServer
) -> None:
    """A redirect naming its issuer is accepted from this one; from another, or without the iss
    the metadata promised, it is refused."""
    login_server.advertise_iss = True
    login_server.iss_param = login_server.base_url
    assert me(pipeline_for(plugin_for(make, login_server), login_server), login_server).is_success
    for iss in ("https://mix-up.example", None):
        login_server.iss_param = iss
        with pytest.raises(LoginError) as caught:
            me(pipeline_for(plugin_for(make, login_server), login_server), login_server)
        assert caught.value.error == "issuer_mismatch"
    assert login_server.calls["authorization_code"] == 1


def test_a_login_not_completed_in_time_fails_typed(make: Any, login_server: LoginServer) -> None:
    """No redirect within login_timeout, or within the pipeline's shorter one: LoginTimeoutError."""
    opened: list[str] = []
    for plugin_timeout, pipeline_timeout in ((0.2, 120.0), (300.0, 0.2)):
        plugin = plugin_for(
            make, login_server, open_browser=opened.append, login_timeout=plugin_timeout
        )
        pipeline = pipeline_for(plugin, login_server, login_timeout=pipeline_timeout)
        with pytest.raises(LoginTimeoutError, match="no login came back") as caught:
            me(pipeline, login_server)
        assert caught.value.endpoint == f"{login_server.base_url}/authorize"
    assert len(opened) == 2


def test_no_browser_is_a_login_error_saying_what_to_do(
    make: Any, login_server: LoginServer
) -> None:
    """open_browser finding no browser, or raising, fails the login at once, saying so."""

    def broken(url: str) -> None:
        raise OSError("no display")

    for opener, match in ((lambda url: False, "login='device'"), (broken, "raised OSError")):
        plugin = plugin_for(make, login_server, open_browser=opener)
        with pytest.raises(LoginError, match=match) as caught:
            me(pipeline_for(plugin, login_server), login_server)
        assert caught.value.error == "no_browser"


def test_the_open_browser_hook_may_be_replaced_on_the_plugin(
    make: Any, login_server: LoginServer
) -> None:
    """The app sets plugin.login.open_browser after configuration (a headless run drives the
    page itself); a stray request to the loopback server does not end the login."""
    plugin = plugin_for(make, login_server)
    plugin.login.open_browser = browser = Browser(before="/favicon.ico")
    assert me(pipeline_for(plugin, login_server), login_server).json() == {"user": "alice"}
    assert browser.pages == [200]


def test_a_fixed_redirect_port_is_used(make: Any, login_server: LoginServer) -> None:
    """redirect_port pins the loopback server's port, for servers that need it registered."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plugin = plugin_for(make, login_server, redirect_port=port, redirect_path="/done")
    login_server.clients["app"].redirect_path = "/done"  # type: ignore[attr-defined]
    assert me(pipeline_for(plugin, login_server), login_server).is_success
    assert plugin.login.open_browser.sent()["redirect_uri"] == f"http://127.0.0.1:{port}/done"


def test_the_customer_id_may_come_from_another_claim(make: Any, login_server: LoginServer) -> None:
    """customer_claim names the ID token claim that is the customer id."""
    pipeline = pipeline_for(plugin_for(make, login_server, customer_claim="email"), login_server)
    me(pipeline, login_server)
    assert pipeline.customer is not None
    assert pipeline.customer.id == "alice@example.com"


def test_without_openid_customer_id_for_says_who_logged_in(
    make: Any, login_server: LoginServer
) -> None:
    """Without openid in scope the app's customer_id_for gets the whole token and names the
    customer; no ID token is asked for."""
    seen: list[dict[str, Any]] = []

    def who(token: dict[str, Any]) -> str:
        seen.append(token)
        return "customer-7"

    plugin = plugin_for(make, login_server, scope="read", customer_id_for=who)
    pipeline = pipeline_for(plugin, login_server)
    assert me(pipeline, login_server).json() == {"user": "alice"}
    assert pipeline.customer is not None
    assert pipeline.customer.id == "customer-7"
    assert "nonce" not in plugin.login.open_browser.sent()
    assert set(seen[0]) >= {"access_token", "refresh_token", "expires_in"}
    assert "id_token" not in seen[0]


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"grant": "client_credentials"}, "'grant' must be 'refresh_token'"),
        ({"scope": "read"}, "customer_id_for"),
        ({"login": "browser"}, "'login' must be one of"),
        ({"id_token_algorithms": ["none"]}, "unsigned ID tokens are never accepted"),
        ({"id_token_algorithms": ["HS256"]}, "supported"),
        ({"redirect_path": "callback"}, "redirect_path"),
        ({"redirect_port": 70000}, "redirect_port"),
    ],
)
def test_bad_login_settings_are_configuration_errors(
    make: Any, login_server: LoginServer, settings: dict[str, Any], match: str
) -> None:
    """Each unusable login setting is refused when the plugin is configured, by name."""
    with pytest.raises(ConfigurationError, match=match):
        plugin_for(make, login_server, **settings)


def test_login_settings_without_login_and_openid_without_issuer_are_refused(make: Any) -> None:
    """A login setting without login, or openid without an issuer to check iss against, is a
    configuration error."""
    base = {"token_endpoint": "https://login.example/token", "client_id": "app"}
    with pytest.raises(ConfigurationError, match="'open_browser' is a login setting"):
        make(**base, open_browser=print)
    with pytest.raises(ConfigurationError, match="'issuer' is required with 'openid'"):
        make(
            **base,
            login="loopback",
            authorization_endpoint="https://login.example/authorize",
            scope="openid",
        )


def test_a_login_error_shows_no_secret_in_its_repr(make: Any, login_server: LoginServer) -> None:
    """The repr of a login error names its class, error and endpoint only."""
    login_server.login_as = None
    with pytest.raises(LoginDeniedError) as caught:
        me(pipeline_for(plugin_for(make, login_server), login_server), login_server)
    endpoint = f"{login_server.base_url}/authorize"
    assert repr(caught.value) == f"LoginDeniedError(error='access_denied', endpoint={endpoint!r})"


def test_the_loopback_server_is_gone_once_the_login_is_done(
    make: Any, login_server: LoginServer
) -> None:
    """The one-shot server stops with its login: its port no longer answers."""
    plugin = plugin_for(make, login_server)
    me(pipeline_for(plugin, login_server), login_server)
    redirect = plugin.login.open_browser.sent()["redirect_uri"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(redirect, timeout=2)


def test_on_token_gets_the_logins_whole_token(make: Any, login_server: LoginServer) -> None:
    """The app's on_token receives the login's whole token (to keep it across a restart)."""
    kept: dict[str, dict[str, Any]] = {}
    plugin = plugin_for(make, login_server, on_token=kept.__setitem__)
    me(pipeline_for(plugin, login_server), login_server)
    (issued,) = [t for t in login_server.by_access.values() if t.user == "alice"]
    assert kept["alice"]["access_token"] == issued.access_token
    assert kept["alice"]["refresh_token"] == issued.refresh_token
    assert "id_token" not in kept["alice"]


def test_without_an_issuer_setting_the_redirects_iss_is_not_compared(
    make: Any, login_server: LoginServer
) -> None:
    """Configured by endpoints alone (no issuer, no openid) the plugin has no issuer to compare
    an RFC 9207 iss with, and takes the redirect."""
    login_server.iss_param = "https://whoever.example"
    plugin = make(
        token_endpoint=login_server.token_url,
        authorization_endpoint=f"{login_server.base_url}/authorize",
        client_id="app",
        login="loopback",
        scope="read",
        customer_id_for=lambda token: "customer-9",
        open_browser=Browser(),
    )
    assert me(pipeline_for(plugin, login_server), login_server).json() == {"user": "alice"}
