"""``JWTProvider`` and ``from_settings``: the claims, the context, keys from settings, rotation."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from asapp_auth_jwt import JWTProvider, Signer, from_settings
from asapp_auth_jwt.__main__ import main as cli
from cryptography.hazmat.primitives import serialization
from jwt_helpers import key_for, private_jwk, verify_joserfc, verify_pyjwt

from asapp_auth import AuthContext, Customer
from asapp_auth.errors import ProviderError
from asapp_auth.plugins import configure_plugin, discover
from asapp_auth.testing import LogSecretsGuard

# A fixed clock at the time the tests start: tokens are valid now, and their claims known.
NOW = float(int(time.time()))
HASH_KEY = "a-subject-hashing-key-of-32-bytes-or-more"


def _token(context: AuthContext | Any) -> str:
    assert isinstance(context, AuthContext)
    token = context.token
    assert token is not None
    return token


def _provider(**settings: Any) -> JWTProvider:
    base: dict[str, Any] = {"keys": [Signer(key_for("ES256"), kid="k1")], "clock": lambda: NOW}
    return from_settings({**base, **settings})


def test_claims_of_a_minted_token() -> None:
    """A token holds iss, sub, aud, iat, nbf, exp = iat + lifetime, a jti and the extra claims."""
    provider = _provider(
        issuer="https://company.example",
        audience="https://platform.example",
        lifetime=120,
        claims={"tenant": "acme"},
        claims_for=lambda customer_id: {"tier": f"gold-{customer_id}"},
    )
    token = provider.mint("alice")[0]
    claims = verify_pyjwt(token, provider.signer, verify_exp=False, verify_iat=False)
    assert claims.pop("jti")
    assert claims == {
        "iss": "https://company.example",
        "sub": "alice",
        "aud": "https://platform.example",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 120,
        "tenant": "acme",
        "tier": "gold-alice",
    }
    assert pyjwt.get_unverified_header(token) == {"alg": "ES256", "typ": "JWT", "kid": "k1"}


def test_every_token_has_its_own_jti() -> None:
    """Two tokens minted at the same instant differ in jti."""
    provider = _provider()
    jtis = {pyjwt.decode(provider.mint("alice")[0], options={"verify_signature": False})["jti"]
            for _ in range(50)}  # fmt: skip
    assert len(jtis) == 50


def test_subject_is_a_keyed_hash_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """With subject_hash_key (here from env:), sub is the HMAC-SHA256 hex of the customer id."""
    monkeypatch.setenv("ASAPP_TEST_SUBJECT_KEY", HASH_KEY)
    provider = _provider(subject_hash_key="env:ASAPP_TEST_SUBJECT_KEY")
    expected = hmac.new(HASH_KEY.encode(), b"alice", hashlib.sha256).hexdigest()
    claims = pyjwt.decode(provider.mint("alice")[0], options={"verify_signature": False})
    assert claims["sub"] == expected
    assert "alice" not in json.dumps(claims)


def test_subject_hash_key_from_a_file(tmp_path: Path) -> None:
    """subject_hash_key may be file:PATH; the file's trailing newline is not part of the key."""
    path = tmp_path / "hash.key"
    path.write_text(HASH_KEY + "\n")
    provider = _provider(subject_hash_key=f"file:{path}")
    assert provider.subject("bob") == hmac.new(HASH_KEY.encode(), b"bob", "sha256").hexdigest()


def test_context_expires_with_the_token(log_guard: LogSecretsGuard) -> None:
    """provide_context returns Auth.Token with the context's expiry set from the token's exp."""
    provider = from_settings({"keys": [Signer(key_for("EdDSA"))], "lifetime": 600})
    context = provider.provide_context(Customer.create("alice"), needs_refresh=False)
    token = _token(context)
    exp = verify_joserfc(token, provider.signer)["exp"]
    assert context is not None
    assert context.expires_at is not None
    assert context.expires_at.timestamp() == pytest.approx(exp, abs=0.01)
    assert exp == pytest.approx(time.time() + 600, abs=2)
    assert dict(context) == {"Auth": {"Token": token}}


def test_refresh_mints_a_new_token() -> None:
    """Each call, and needs_refresh=True in particular, returns a newly signed token."""
    provider = _provider()
    first = _token(provider.provide_context(Customer.create("alice"), needs_refresh=False))
    second = _token(provider.provide_context(Customer.create("alice"), needs_refresh=True))
    assert first != second


def test_customers_limits_who_is_served() -> None:
    """With customers set, any other customer gets None (the next provider is asked)."""
    provider = _provider(customers=["alice"])
    assert provider.provide_context(Customer.create("bob"), needs_refresh=False) is None
    assert provider.provide_context(Customer.create("alice"), needs_refresh=False) is not None


def test_claims_for_failures_are_provider_errors() -> None:
    """claims_for raising, or setting a reserved claim, fails the request with ProviderError."""

    def broken(customer_id: str) -> dict[str, Any]:
        raise RuntimeError("backend down")

    with pytest.raises(ProviderError, match="claims_for raised RuntimeError") as info:
        _provider(claims_for=broken).provide_context(Customer.create("alice"), False)
    assert (info.value.plugin, info.value.customer_id) == ("jwt", "alice")
    with pytest.raises(ProviderError, match="sets \\['exp'\\]"):
        _provider(claims_for=lambda c: {"exp": 1}).provide_context(Customer.create("alice"), False)


def test_rotation_signs_with_the_active_kid_and_publishes_all() -> None:
    """With several keys the active kid signs, and jwks() publishes every public key."""
    old, new = Signer(key_for("ES256"), kid="old"), Signer(key_for("EdDSA"), kid="new")
    provider = JWTProvider([old, new], kid="new", clock=lambda: NOW)
    token = provider.mint("alice")[0]
    assert pyjwt.get_unverified_header(token)["kid"] == "new"
    jwks = provider.jwks()
    assert [k["kid"] for k in jwks["keys"]] == ["old", "new"]
    key = pyjwt.PyJWKSet.from_dict(jwks)["new"]
    claims = pyjwt.decode(
        token, key, algorithms=["EdDSA"], options={"verify_exp": False, "verify_iat": False}
    )
    assert claims["sub"] == "alice"


def _pem(key: Any, passphrase: bytes | None = None) -> bytes:
    encryption: Any = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else
        serialization.NoEncryption()
    )  # fmt: skip
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return data


def test_keys_from_every_settings_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """keys accepts a PEM path, file:, env:, {'pem': ...}, a JWK, a JWK file and a JWKS file."""
    pem_path = tmp_path / "rsa.pem"
    pem_path.write_bytes(_pem(key_for("RS256"), b"pass phrase"))
    monkeypatch.setenv("ASAPP_TEST_PASSPHRASE", "pass phrase")
    monkeypatch.setenv("ASAPP_TEST_KEY_PEM", _pem(key_for("ES384")).decode())
    jwk_path = tmp_path / "ed.json"
    jwk_path.write_text(json.dumps({**private_jwk(key_for("EdDSA")), "kid": "ed"}))
    jwks_path = tmp_path / "jwks.json"
    jwks_path.write_text(json.dumps({"keys": [{**private_jwk(key_for("ES512")), "kid": "p521"}]}))
    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(_pem(key_for("ES256")))
    provider = from_settings({
        "keys": [
            {"pem": str(pem_path), "algorithm": "PS256"},
            "env:ASAPP_TEST_KEY_PEM",
            {"pem": f"file:{ec_path}", "kid": "ec", "algorithm": "ES256"},
            {**private_jwk(key_for("HS384")), "kid": "hs", "alg": "HS384"},
            str(jwk_path),
            str(jwks_path),
        ],
        "passphrase_env": "ASAPP_TEST_PASSPHRASE",
        "kid": "ec",
    })  # fmt: skip
    found = {s.kid: s.algorithm for s in provider.signers}
    assert found.pop("ec") == "ES256"
    assert found.pop("hs") == "HS384"
    assert found.pop("ed") == "EdDSA"
    assert found.pop("p521") == "ES512"
    # The PEM keys without a kid get their thumbprint as kid.
    assert sorted(found.values()) == ["ES384", "PS256"]
    assert all(len(kid) == 43 for kid in found)
    # HMAC keys are never published.
    assert "hs" not in {k["kid"] for k in provider.jwks()["keys"]}
    assert len(provider.jwks()["keys"]) == 5


def test_per_key_passphrase_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A {'pem': ..., 'passphrase_env': ...} entry decrypts with its own variable."""
    path = tmp_path / "k.pem"
    path.write_bytes(_pem(key_for("EdDSA"), b"own secret"))
    monkeypatch.setenv("ASAPP_TEST_OWN", "own secret")
    provider = from_settings({"keys": {"pem": str(path), "passphrase_env": "ASAPP_TEST_OWN"}})
    assert provider.signer.algorithm == "EdDSA"


def test_plugin_is_listed_once_installed_and_configured_by_name() -> None:
    """The installed distribution is listed under entry point jwt and configures a provider."""
    infos = {info.name: info for info in discover()}
    info = infos["jwt"]
    assert (info.distribution, info.value, info.error) == ("asapp-auth-jwt", "asapp_auth_jwt", None)
    plugin = configure_plugin(info, {"keys": [Signer(key_for("ES256"))]})
    assert isinstance(plugin, JWTProvider)


def test_repr_holds_no_secret() -> None:
    """The provider's repr names algorithm, kid, key count and lifetime, nothing secret."""
    provider = _provider(subject_hash_key=HASH_KEY)
    text = repr(provider)
    assert text == "JWTProvider(algorithm='ES256', kid='k1', keys=1, lifetime=300)"


def test_cli_prints_the_public_jwks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """python -m asapp_auth_jwt jwks prints the public JWKS of the keys, with no private part."""
    path = tmp_path / "k.pem"
    path.write_bytes(_pem(key_for("ES256")))
    assert cli(["jwks", str(path), "--kid", "k1"]) == 0
    jwks = json.loads(capsys.readouterr().out)
    assert jwks == {"keys": [Signer(key_for("ES256"), kid="k1").public_jwk()]}
    assert cli(["jwks", str(tmp_path / "missing.pem")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_log_guard_catches_a_leak() -> None:
    """The log guard used by every test fails when a record holds a signed token."""
    guard = LogSecretsGuard()
    token = Signer(key_for("ES256")).sign({"sub": "x"})
    guard.add(token)
    guard.emit(logging.LogRecord("x", logging.DEBUG, __file__, 1, "sent %s", (token,), None))
    with pytest.raises(AssertionError, match="secrets in log records"):
        guard.check()


def test_minting_logs_nothing_secret(caplog: pytest.LogCaptureFixture) -> None:
    """Minting logs the kid and exp at DEBUG, and neither the token nor the subject key."""
    caplog.set_level(logging.DEBUG)
    provider = _provider(subject_hash_key=HASH_KEY)
    token = provider.mint("alice")[0]
    text = caplog.text
    assert "minted a JWT (kid=k1" in text
    assert token not in text
    assert HASH_KEY not in text
