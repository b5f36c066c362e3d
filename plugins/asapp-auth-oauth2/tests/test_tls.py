"""tls_client_auth (RFC 8705) end to end: the authorization server on HTTPS requires a client
certificate from its CA, and authenticates the client by the verified certificate's subject."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from asapp_auth_oauth2 import (
    InvalidClientError,
    OAuth2Provider,
    TLSError,
    TokenEndpointUnavailableError,
)
from authserver import AuthServer, Client, Running, start
from conftest import SECRETS
from pki import CA, Issued

from asapp_auth import Customer
from asapp_auth.errors import ConfigurationError, ProviderError


@dataclass
class PKI:
    ca: CA
    server: Issued
    client: Issued
    other_ca: CA
    foreign_client: Issued
    stranger: Issued


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    """A CA with a server certificate for 127.0.0.1 and client certificates, and a second CA."""
    ca = CA(tmp_path, "test-ca")
    other = CA(tmp_path, "other-ca")
    pki = PKI(
        ca=ca,
        server=ca.issue("127.0.0.1", server=True),
        client=ca.issue("app.clients.example"),
        other_ca=other,
        foreign_client=other.issue("app.clients.example"),
        stranger=ca.issue("someone-else.clients.example"),
    )
    for issued in (pki.client, pki.foreign_client, pki.stranger):
        pem = issued.key.read_text()
        SECRETS.update(line for line in pem.splitlines() if not line.startswith("-----"))
    return pki


@pytest.fixture
def tls_auth(pki: PKI) -> Iterator[AuthServer]:
    """The authorization server on HTTPS, requiring client certificates issued by the test CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    context.load_verify_locations(cafile=pki.ca.cert)
    context.verify_mode = ssl.CERT_REQUIRED
    server = AuthServer()
    server.add_client(
        Client(
            "app",
            "tls_client_auth",
            ("client_credentials",),
            cert_cn="app.clients.example",
        )
    )
    running = start(server, context)
    try:
        yield server
    finally:
        SECRETS.update(server.secrets)
        running.stop()


class _Resource(BaseHTTPRequestHandler):
    """A platform API: 200 for a live access token the authorization server issued, else 401."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        auth: AuthServer = self.server.auth
        header = self.headers.get("Authorization", "")
        token = auth.by_access.get(header.removeprefix("Bearer "))
        if header.startswith("Bearer ") and token is not None and not token.revoked:
            status, body = 200, {"client": token.client_id}
        else:
            status, body = 401, {"error": "invalid_token"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def resource(tls_auth: AuthServer) -> Iterator[Running]:
    """A resource server on 127.0.0.1 that accepts the tokens ``tls_auth`` issued."""
    running = Running(_Resource, tls_auth)
    try:
        yield running
    finally:
        running.stop()


def settings(auth: AuthServer, pki: PKI, **extra: Any) -> dict[str, Any]:
    return {
        "token_endpoint": auth.token_url,
        "client_id": "app",
        "client_auth": "tls_client_auth",
        "cert": pki.client.pair,
        "verify": str(pki.ca.cert),
        "max_retries": 1,
        "backoff_base": 0.01,
        "backoff_max": 0.02,
        **extra,
    }


@pytest.fixture
def make_tls() -> Iterator[Any]:
    """A factory of OAuth2Provider objects, each closed after the test."""
    made: list[OAuth2Provider] = []

    def factory(**kwargs: Any) -> OAuth2Provider:
        plugin = OAuth2Provider(**kwargs)
        made.append(plugin)
        return plugin

    yield factory
    for plugin in made:
        plugin.close()


def test_tls_client_auth_token_is_used_through_the_pipeline(
    tls_auth: AuthServer, pki: PKI, resource: Running
) -> None:
    """A pipeline configured with tls_client_auth gets a token over mTLS and the API accepts it."""
    from asapp_auth.pipeline import AuthPipeline

    assert tls_auth.base_url.startswith("https://127.0.0.1:")
    pipeline = AuthPipeline(origins=[resource.url], plugins={"oauth2": settings(tls_auth, pki)})
    pipeline.load(customer_id="alice")
    try:
        with httpx.Client(auth=pipeline) as client:
            first = client.get(resource.url + "/api/me")
            second = client.get(resource.url + "/api/me")
    finally:
        plugin = pipeline.plugin_manager.get_plugin("oauth2")
        if plugin is not None:
            plugin.close()
    assert first.status_code == second.status_code == 200
    assert first.json() == {"client": "app"}
    assert tls_auth.calls["client_credentials"] == 1
    form = tls_auth.forms[0]
    assert form["client_id"] == ["app"]
    assert not {"client_secret", "client_assertion"} & set(form)


def test_tls_client_auth_with_a_single_pem_file(
    make_tls: Any, tls_auth: AuthServer, pki: PKI, tmp_path: Path
) -> None:
    """A ``cert`` that is one PEM file holding certificate and key works as well as a pair."""
    combined = tmp_path / "client-combined.pem"
    combined.write_bytes(pki.client.cert.read_bytes() + pki.client.key.read_bytes())
    plugin = make_tls(**settings(tls_auth, pki, cert=str(combined)))
    context = plugin.provide_context(Customer("alice"), False, None)
    assert context.token in tls_auth.by_access


def test_certificate_of_another_client_is_invalid_client(
    make_tls: Any, tls_auth: AuthServer, pki: PKI
) -> None:
    """A certificate from the right CA but for another client is refused as invalid_client."""
    plugin = make_tls(**settings(tls_auth, pki, cert=pki.stranger.pair))
    with pytest.raises(InvalidClientError) as caught:
        plugin.provide_context(Customer("alice"), False, None)
    assert caught.value.endpoint == tls_auth.token_url
    assert tls_auth.token_url in str(caught.value)
    assert caught.value.error == "invalid_client"
    assert tls_auth.by_access == {}


@pytest.mark.parametrize("which", ["no certificate", "another CA"])
def test_client_certificate_refused_in_the_handshake(
    make_tls: Any, tls_auth: AuthServer, pki: PKI, which: str
) -> None:
    """Without a certificate, or with one from another CA, the handshake fails: a typed error
    names the endpoint and the cert setting, and the request is not retried."""
    if which == "no certificate":
        # tls_client_auth requires cert, so the certificate-less client uses the none method.
        extra: dict[str, Any] = {"client_auth": "none", "cert": None}
    else:
        extra = {"cert": pki.foreign_client.pair}
    plugin = make_tls(**settings(tls_auth, pki, **extra))
    with pytest.raises(ProviderError) as caught:
        plugin.provide_context(Customer("alice"), False, None)
    error = caught.value
    assert isinstance(error, TLSError)
    assert isinstance(error, TokenEndpointUnavailableError)
    assert error.endpoint == tls_auth.token_url
    assert error.attempts == 1
    message = str(error)
    assert tls_auth.token_url in message
    assert "client certificate" in message
    assert "'cert'" in message
    assert str(pki.client.key) not in message
    assert tls_auth.token_calls == 0


def test_server_verified_with_the_wrong_ca_fails_clearly(
    make_tls: Any, tls_auth: AuthServer, pki: PKI
) -> None:
    """When verify points at a CA that did not issue the server's certificate, the plugin refuses
    the server with a typed error naming the endpoint and the verify setting, without retrying."""
    plugin = make_tls(**settings(tls_auth, pki, verify=str(pki.other_ca.cert)))
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        plugin.provide_context(Customer("alice"), False, None)
    error = caught.value
    assert isinstance(error, TLSError)
    assert error.endpoint == tls_auth.token_url
    assert error.attempts == 1
    assert tls_auth.token_url in str(error)
    assert "'verify'" in str(error)
    assert "server certificate" in str(error)
    assert tls_auth.token_calls == 0


def test_default_trust_store_refuses_the_test_ca(
    make_tls: Any, tls_auth: AuthServer, pki: PKI
) -> None:
    """With verify left at its default the system trust store refuses the private test CA."""
    raw = settings(tls_auth, pki)
    del raw["verify"]
    plugin = make_tls(**raw)
    with pytest.raises(TokenEndpointUnavailableError, match="'verify'"):
        plugin.provide_context(Customer("alice"), False, None)
    assert tls_auth.token_calls == 0


@pytest.mark.parametrize("problem", ["missing certificate", "key of another certificate"])
def test_unusable_cert_is_a_configuration_error(
    tls_auth: AuthServer, pki: PKI, tmp_path: Path, problem: str
) -> None:
    """A cert setting that cannot be loaded fails at configuration time, naming the setting."""
    if problem == "missing certificate":
        cert = [str(tmp_path / "missing.pem"), str(pki.client.key)]
    else:
        cert = [str(pki.client.cert), str(pki.stranger.key)]
    with pytest.raises(ConfigurationError) as caught:
        OAuth2Provider(**settings(tls_auth, pki, cert=cert))
    assert "'cert'" in str(caught.value)
    assert "oauth2" in str(caught.value)


def test_unusable_verify_is_a_configuration_error(
    tls_auth: AuthServer, pki: PKI, tmp_path: Path
) -> None:
    """A verify path that is not a CA bundle fails at configuration time, naming the setting."""
    not_a_ca = tmp_path / "not-a-ca.pem"
    not_a_ca.write_text("not a certificate\n")
    for verify in (str(tmp_path / "missing-ca.pem"), str(not_a_ca)):
        with pytest.raises(ConfigurationError, match="'verify'"):
            OAuth2Provider(**settings(tls_auth, pki, verify=verify))


def _own_context(ca: CA, client: Issued | None) -> ssl.SSLContext:
    """An app's own TLS context: trusting ``ca``, presenting ``client``'s certificate."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    if client is not None:
        context.load_cert_chain(*client.pair)
    return context


def _without_tls_files(raw: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in raw.items() if name not in ("verify", "cert")}


def test_an_ssl_context_setting_is_what_the_plugin_connects_with(
    tls_auth: AuthServer, pki: PKI, resource: Running
) -> None:
    """An ``ssl.SSLContext`` given as ``ssl_context`` is used as it is, for the server's trust
    and for the client certificate of tls_client_auth, through a pipeline."""
    from asapp_auth.pipeline import AuthPipeline

    raw = _without_tls_files(settings(tls_auth, pki))
    raw["ssl_context"] = _own_context(pki.ca, pki.client)
    pipeline = AuthPipeline(origins=[resource.url], plugins={"oauth2": raw})
    pipeline.load(customer_id="alice")
    try:
        with httpx.Client(auth=pipeline) as client:
            answer = client.get(resource.url + "/api/me")
    finally:
        pipeline.plugin_manager.get_plugin("oauth2").close()
    assert answer.status_code == 200
    assert answer.json() == {"client": "app"}
    assert tls_auth.calls["client_credentials"] == 1


@pytest.mark.parametrize("client", ["no certificate", "a certificate of another CA"])
def test_a_handshake_refused_with_an_own_ssl_context_names_that_setting(
    make_tls: Any, tls_auth: AuthServer, pki: PKI, client: str
) -> None:
    """When the server refuses an own ``ssl_context`` (a wrong CA, no or a foreign client
    certificate), the TLSError names ``ssl_context``, not settings that were not given."""
    raw = _without_tls_files(settings(tls_auth, pki))
    if client == "no certificate":
        raw["client_auth"] = "none"
    shown = None if client == "no certificate" else pki.foreign_client
    for context, says in (
        (_own_context(pki.ca, shown), "client certificate of the 'ssl_context' setting"),
        (_own_context(pki.other_ca, pki.client), "into 'ssl_context' (load_verify_locations)"),
    ):
        plugin = make_tls(**raw, ssl_context=context)
        with pytest.raises(TLSError) as caught:
            plugin.provide_context(Customer("alice"), False, None)
        assert says in str(caught.value)
        assert "'verify'" not in str(caught.value)
        assert "'cert'" not in str(caught.value)
    assert tls_auth.token_calls == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ssl_context": "/etc/ssl/certs"}, "must be an ssl.SSLContext, not str"),
        ({"ssl_context": True}, "must be an ssl.SSLContext, not bool"),
        ({"verify": False}, "was given with ['verify']"),
        ({"cert": "client.pem"}, "was given with ['cert']"),
    ],
)
def test_a_bad_or_contradicted_ssl_context_is_a_configuration_error(
    tls_auth: AuthServer, pki: PKI, extra: dict[str, Any], message: str
) -> None:
    """An ``ssl_context`` that is no SSLContext, or one given with ``verify`` or ``cert`` (which
    it replaces), fails at configuration time, naming the settings."""
    raw = {
        "ssl_context": _own_context(pki.ca, pki.client),
        **_without_tls_files(settings(tls_auth, pki)),
    }
    raw.update(extra)
    with pytest.raises(ConfigurationError) as caught:
        OAuth2Provider(**raw)
    assert message in str(caught.value)
    assert "'ssl_context'" in str(caught.value)
