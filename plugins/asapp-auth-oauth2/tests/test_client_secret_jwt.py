"""client_secret_jwt (RFC 7523 section 2.2, HS256/384/512) against the real authorization server,
which verifies each assertion's MAC, claims and jti; and the refusal of an HMAC signer passed as
private_key_jwt."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from asapp_auth_oauth2 import InvalidClientError
from authserver import AuthServer, Client
from conftest import SECRETS, PyJWTSigner

from asapp_auth import Customer
from asapp_auth.errors import ConfigurationError, ProviderError

# 64 bytes: long enough for HS512 (RFC 7518 section 3.2 wants the hash size at least).
LONG_SECRET = "client-secret-jwt-" + "k" * 46


def register(auth: AuthServer, secret: str = LONG_SECRET) -> None:
    auth.add_client(
        Client(
            "app",
            "client_secret_jwt",
            ("client_credentials", "refresh_token"),
            secret=secret,
        )
    )


def claims_of(assertion: str) -> dict[str, Any]:
    payload = assertion.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_each_hmac_algorithm_gets_a_token(make: Any, auth: AuthServer, algorithm: str) -> None:
    """The server verifies the MAC under each algorithm; the secret itself is never sent."""
    register(auth)
    plugin = make(
        token_endpoint=auth.token_url,
        client_id="app",
        client_auth="client_secret_jwt",
        client_secret=LONG_SECRET,
        token_endpoint_auth_signing_alg=algorithm,
    )
    for _ in range(2):  # a second call: a fresh jti, which the server insists on
        token = plugin.provide_context(Customer("alice"), True, None).token
        assert token in auth.by_access
    assert auth.assertion_algorithms == [algorithm, algorithm]
    first, second = (form["client_assertion"][0] for form in auth.forms)
    claims = claims_of(first)
    assert claims["iss"] == claims["sub"] == "app"
    assert claims["aud"] == auth.token_url
    assert claims["exp"] - claims["iat"] == 60
    assert claims["jti"] != claims_of(second)["jti"]
    assert all("client_secret" not in form for form in auth.forms)
    assert all(LONG_SECRET not in json.dumps(form) for form in auth.forms)


def test_refresh_tokens_with_client_secret_jwt(make: Any, auth: AuthServer) -> None:
    """A per-customer grant authenticates the same way."""
    register(auth)
    plugin = make(
        token_endpoint=auth.token_url,
        client_id="app",
        client_auth="client_secret_jwt",
        client_secret=LONG_SECRET,
        grant="refresh_token",
    )
    plugin.set_refresh_token("alice", auth.login("app", "alice"))
    token = plugin.provide_context(Customer("alice"), False, None).token
    assert auth.by_access[token].user == "alice"
    assert auth.assertion_algorithms == ["HS256"]


def test_a_wrong_secret_is_invalid_client(make: Any, auth: AuthServer) -> None:
    """An assertion MACed with another secret is refused by the server, and no secret is shown."""
    register(auth)
    wrong = "another-secret-" + "w" * 40
    SECRETS.add(wrong)
    plugin = make(
        token_endpoint=auth.token_url,
        client_id="app",
        client_auth="client_secret_jwt",
        client_secret=wrong,
    )
    with pytest.raises(InvalidClientError) as caught:
        plugin.provide_context(Customer("alice"), False, None)
    shown = str(caught.value) + repr(caught.value)
    assert auth.token_url in str(caught.value)
    assert wrong not in shown
    assert auth.forms[0]["client_assertion"][0] not in shown


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"client_secret": "s" * 31}, "31 bytes; HS256 for client_secret_jwt needs at least 32"),
        (
            {"client_secret": "s" * 40, "token_endpoint_auth_signing_alg": "HS512"},
            "needs at least 64",
        ),
        ({"client_secret": LONG_SECRET, "token_endpoint_auth_signing_alg": "RS256"}, "one of"),
        ({}, "'client_secret' is required with client_auth='client_secret_jwt'"),
        (
            {
                "client_auth": "client_secret_basic",
                "client_secret": LONG_SECRET,
                "token_endpoint_auth_signing_alg": "HS256",
            },
            "applies to client_auth='client_secret_jwt'",
        ),
    ],
)
def test_unusable_client_secret_jwt_settings_are_refused(
    make: Any, settings: dict[str, Any], words: str
) -> None:
    """A short secret, a non-HMAC algorithm or a missing secret fails at configuration."""
    with pytest.raises(ConfigurationError, match=words) as caught:
        make(
            token_endpoint="https://login.example/token",
            client_id="app",
            **{"client_auth": "client_secret_jwt", **settings},
        )
    assert "plugin 'oauth2'" in str(caught.value)
    assert "s" * 31 not in str(caught.value)


def _hmac_signers() -> list[Any]:
    signers: list[Any] = [PyJWTSigner(b"h" * 32, algorithm="HS256")]
    try:
        from asapp_auth_jwt import Signer
    except ImportError:
        return signers
    return [*signers, Signer(b"h" * 32, algorithm="HS256")]


@pytest.mark.parametrize("signer", _hmac_signers(), ids=type)
def test_an_hmac_signer_is_refused_as_private_key_jwt(make: Any, signer: Any) -> None:
    """An HMAC signer under private_key_jwt mislabels the method: refused, naming the right one."""
    with pytest.raises(ConfigurationError, match="client_secret_jwt, not private_key_jwt"):
        make(
            token_endpoint="https://login.example/token",
            client_id="app",
            client_auth="private_key_jwt",
            signer=signer,
        )


def test_a_signer_hiding_an_hmac_is_refused_before_sending(make: Any, auth: AuthServer) -> None:
    """A signer without an ``algorithm`` that MACs is caught at its first assertion, unsent."""
    inner = PyJWTSigner(b"h" * 32, algorithm="HS256")

    class Opaque:
        def sign(self, claims: Any, headers: Any = None) -> str:
            return inner.sign(claims, headers)

    auth.add_client(Client("app", "private_key_jwt", ("client_credentials",)))
    plugin = make(
        token_endpoint=auth.token_url,
        client_id="app",
        client_auth="private_key_jwt",
        signer=Opaque(),
    )
    with pytest.raises(ProviderError, match="alg 'HS256', which is no private-key signature"):
        plugin.provide_context(Customer("alice"), False, None)
    assert auth.token_calls == 0
