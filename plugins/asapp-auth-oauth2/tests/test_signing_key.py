"""The ``signing_key`` settings: a PEM private key file (plain, or encrypted with
``signing_key_passphrase``) becomes the JWT plugin's signer, whose assertions the authorization
server verifies; a bad key or passphrase is a ``ConfigurationError`` at configuration time."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from asapp_auth_oauth2 import OAuth2Provider
from authserver import JWT_BEARER, AuthServer, Client
from conftest import SECRETS
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from asapp_auth import Customer
from asapp_auth.errors import ConfigurationError

pytest.importorskip("asapp_auth_jwt")

PASSPHRASE = "correct horse battery staple"


def write_pem(path: Path, key: Any, passphrase: str | None = None) -> Path:
    """Write ``key`` as a PKCS#8 PEM, encrypted when given a passphrase; its text is a secret."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.write_bytes(pem)
    SECRETS.update(line for line in pem.decode().splitlines() if not line.startswith("-----"))
    return path


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    """The public JWK of ``key``, made by PyJWT (independent of the plugins' code)."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg=alg, use="sig")
    return dict(jwk)


def header_of(token: str) -> dict[str, Any]:
    """The decoded JOSE header of a compact JWS."""
    head = token.split(".", maxsplit=1)[0]
    return dict(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))))


@pytest.fixture(scope="module")
def ec_pem_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_pem_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def register(auth: AuthServer, method: str, key: Any, kid: str, alg: str) -> None:
    auth.add_client(
        Client(
            "app",
            method,
            ("client_credentials", JWT_BEARER),
            public_jwk=public_jwk(key, kid, alg),
        )
    )


def test_private_key_jwt_with_a_pem_file(
    make: Any, auth: AuthServer, ec_pem_key: Any, tmp_path: Path
) -> None:
    """A plain PEM file in signing_key signs private_key_jwt assertions the server accepts."""
    key_file = write_pem(tmp_path / "client.pem", ec_pem_key)
    register(auth, "private_key_jwt", ec_pem_key, "file-kid", "ES256")
    plugin = make(
        token_endpoint=auth.token_url,
        client_id="app",
        client_auth="private_key_jwt",
        signing_key=str(key_file),
        signing_kid="file-kid",
    )
    token = plugin.provide_context(Customer("alice"), False, None).token
    assert auth.by_access[token].client_id == "app"
    assertion = auth.forms[0]["client_assertion"][0]
    assert header_of(assertion) == {"alg": "ES256", "typ": "JWT", "kid": "file-kid"}
    claims = jwt.decode(assertion, ec_pem_key.public_key(), ["ES256"], audience=auth.token_url)
    assert claims["iss"] == claims["sub"] == "app"
    assert "client_secret" not in auth.forms[0]


def test_private_key_jwt_with_an_encrypted_pem_and_env_passphrase(
    make: Any,
    auth: AuthServer,
    rsa_pem_key: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An encrypted PEM, its passphrase from env:NAME and signing_algorithm RS256, signs
    assertions the server verifies."""
    SECRETS.add(PASSPHRASE)
    monkeypatch.setenv("OAUTH2_TEST_KEY_PASSPHRASE", PASSPHRASE)
    key_file = write_pem(tmp_path / "client-enc.pem", rsa_pem_key, PASSPHRASE)
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    register(auth, "private_key_jwt", rsa_pem_key, "rsa-kid", "RS256")
    plugin = make(
        token_endpoint=auth.token_url,
        client_id="app",
        client_auth="private_key_jwt",
        signing_key=f"file:{key_file}",
        signing_key_passphrase="env:OAUTH2_TEST_KEY_PASSPHRASE",
        signing_algorithm="RS256",
        signing_kid="rsa-kid",
    )
    assert PASSPHRASE not in repr(plugin) + repr(plugin.settings)
    for refresh in (False, True):
        token = plugin.provide_context(Customer("alice"), refresh, None).token
        assert token in auth.by_access
    assertions = [form["client_assertion"][0] for form in auth.forms]
    assert len(set(assertions)) == 2
    assert {header_of(a)["alg"] for a in assertions} == {"RS256"}


def test_jwt_bearer_grant_with_a_pem_file(
    make: Any, auth: AuthServer, ec_pem_key: Any, tmp_path: Path
) -> None:
    """The jwt_bearer grant signs the customer's assertion with the signing_key PEM file."""
    key_file = write_pem(tmp_path / "bearer.pem", ec_pem_key)
    register(auth, "none", ec_pem_key, "bearer-kid", "ES256")
    auth.users.add("alice")
    plugin = make(
        token_endpoint=auth.token_url,
        client_id="app",
        grant="jwt_bearer",
        signing_key=str(key_file),
        signing_kid="bearer-kid",
    )
    token = plugin.provide_context(Customer("alice"), False, None).token
    assert auth.by_access[token].user == "alice"
    claims = jwt.decode(
        auth.forms[0]["assertion"][0],
        ec_pem_key.public_key(),
        ["ES256"],
        audience=auth.token_url,
    )
    assert claims["sub"] == "alice"
    assert claims["iss"] == "app"


def _bad_key_cases(tmp_path: Path, ec_key: Any) -> dict[str, tuple[dict, str]]:
    plain = write_pem(tmp_path / "plain.pem", ec_key)
    encrypted = write_pem(tmp_path / "enc.pem", ec_key, PASSPHRASE)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    public = tmp_path / "public.pem"
    public.write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return {
        "not PEM": ({"signing_key": str(garbage)}, "signing_key"),
        "public key": ({"signing_key": str(public)}, "signing_key"),
        "missing file": ({"signing_key": str(tmp_path / "nope.pem")}, "signing_key"),
        "wrong passphrase": (
            {"signing_key": str(encrypted), "signing_key_passphrase": "env:OAUTH2_TEST_WRONG"},
            "signing_key_passphrase",
        ),
        "no passphrase": ({"signing_key": str(encrypted)}, "signing_key"),
        "unset passphrase variable": (
            {
                "signing_key": str(encrypted),
                "signing_key_passphrase": "env:OAUTH2_TEST_SURELY_UNSET",
            },
            "signing_key_passphrase",
        ),
        "passphrase for a plain key": (
            {"signing_key": str(plain), "signing_key_passphrase": "env:OAUTH2_TEST_WRONG"},
            "signing_key_passphrase",
        ),
        "algorithm mismatch": (
            {"signing_key": str(plain), "signing_algorithm": "RS256"},
            "signing_algorithm",
        ),
        "inline key and signer": (
            {"signing_key": str(plain), "signer": object()},
            "signer",
        ),
    }


BAD_CASES = [
    "not PEM",
    "public key",
    "missing file",
    "wrong passphrase",
    "no passphrase",
    "unset passphrase variable",
    "passphrase for a plain key",
    "algorithm mismatch",
    "inline key and signer",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_signing_key_fails_at_configuration_time(
    case: str,
    tmp_path: Path,
    ec_pem_key: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad signing key, passphrase or algorithm raises ConfigurationError naming the setting,
    with no key material or passphrase in the message."""
    SECRETS.update({PASSPHRASE, "wrong-passphrase-value"})
    monkeypatch.setenv("OAUTH2_TEST_WRONG", "wrong-passphrase-value")
    monkeypatch.delenv("OAUTH2_TEST_SURELY_UNSET", raising=False)
    extra, named = _bad_key_cases(tmp_path, ec_pem_key)[case]
    with pytest.raises(ConfigurationError) as caught:
        OAuth2Provider(
            token_endpoint="https://as.example/token",
            client_id="app",
            client_auth="private_key_jwt",
            **extra,
        )
    message = str(caught.value)
    assert f"'{named}'" in message
    assert "oauth2" in message
    assert "asapp-auth-jwt" not in message
    assert "passphrase_env" not in message  # the JWT plugin's setting name, not this plugin's
    for secret in (PASSPHRASE, "wrong-passphrase-value", "PRIVATE KEY-----\n"):
        assert secret not in message + repr(caught.value)


def test_inline_pem_text_is_never_shown(ec_pem_key: Any, tmp_path: Path) -> None:
    """PEM text given inline in signing_key is used as the key, not read as a path (whose
    error message would show it)."""
    pem = write_pem(tmp_path / "inline.pem", ec_pem_key).read_text()
    plugin = OAuth2Provider(
        token_endpoint="https://as.example/token",
        client_id="app",
        client_auth="private_key_jwt",
        signing_key=pem,
    )
    try:
        assert plugin.settings.signer is not None
        assert pem not in repr(plugin.settings)
    finally:
        plugin.close()
    broken = pem.replace("A", "B", 5)
    with pytest.raises(ConfigurationError, match="'signing_key'") as caught:
        OAuth2Provider(
            token_endpoint="https://as.example/token",
            client_id="app",
            client_auth="private_key_jwt",
            signing_key=broken,
        )
    assert broken.splitlines()[1] not in str(caught.value)
