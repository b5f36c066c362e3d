"""Every unsafe or mismatched key is refused when the signer or plugin is configured."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from asapp_auth_jwt import Signer, from_settings
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from jwt_helpers import key_for

from asapp_auth.errors import ConfigurationError


@pytest.fixture(scope="module")
def small_rsa() -> rsa.RSAPrivateKey:
    """A 1024-bit RSA key, too small to sign with."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "RS512"])
def test_rsa_under_2048_bits_is_refused(small_rsa: rsa.RSAPrivateKey, algorithm: str) -> None:
    """An RSA key under 2048 bits is refused, naming its size."""
    with pytest.raises(ConfigurationError, match="1024 bits; it must have at least 2048"):
        Signer(small_rsa, algorithm=algorithm)


@pytest.mark.parametrize(("algorithm", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_hmac_secret_under_the_hash_size_is_refused(algorithm: str, minimum: int) -> None:
    """An HMAC secret shorter than the hash is refused; one of exactly the hash size is not."""
    with pytest.raises(ConfigurationError, match=f"at least {minimum} bytes"):
        Signer(b"s" * (minimum - 1), algorithm=algorithm)
    assert Signer(b"s" * minimum, algorithm=algorithm).algorithm == algorithm


@pytest.mark.parametrize(
    ("key_algorithm", "algorithm"),
    [
        ("RS256", "ES256"),
        ("RS256", "EdDSA"),
        ("RS256", "HS256"),
        ("ES256", "ES384"),
        ("ES384", "ES512"),
        ("ES512", "ES256"),
        ("ES256", "RS256"),
        ("EdDSA", "ES256"),
        ("EdDSA", "PS256"),
        ("HS512", "RS256"),
        ("HS512", "EdDSA"),
    ],
)
def test_key_that_does_not_match_the_algorithm_is_refused(
    key_algorithm: str, algorithm: str
) -> None:
    """A key of another type or curve than the algorithm needs is refused."""
    with pytest.raises(ConfigurationError, match=f"algorithm {algorithm} cannot sign with"):
        Signer(key_for(key_algorithm), algorithm=algorithm)


@pytest.mark.parametrize("name", ["none", "None", "NONE"])
def test_none_algorithm_is_refused(name: str) -> None:
    """The none algorithm is refused, whatever its case."""
    with pytest.raises(ConfigurationError, match="does not sign"):
        Signer(b"s" * 32, algorithm=name)


def test_unknown_algorithm_is_refused() -> None:
    """An algorithm outside the supported list is refused, listing the supported ones."""
    with pytest.raises(ConfigurationError, match="not supported; use one of RS256"):
        Signer(key_for("ES256"), algorithm="ES256K")


def test_public_keys_and_other_curves_are_refused() -> None:
    """A public key, an Ed448 key or a secp256k1 key cannot make a signer."""
    with pytest.raises(ConfigurationError, match="cannot sign"):
        Signer(key_for("ES256").public_key())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cannot sign"):
        Signer(ed448.Ed448PrivateKey.generate())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cannot sign"):
        Signer(ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(ConfigurationError, match="cannot sign"):
        Signer(ec.generate_private_key(ec.SECP256K1()), algorithm="ES256")


def test_unsafe_keys_are_refused_through_settings_too() -> None:
    """from_settings refuses an unsafe key with the same error, at configuration time."""
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        from_settings({"keys": [{"kty": "oct", "k": "c2hvcnQ"}], "algorithm": "HS256"})
    with pytest.raises(ConfigurationError, match="does not sign"):
        from_settings({"keys": [{"kty": "oct", "k": "c2hvcnQ", "alg": "none"}]})


def _settings(**extra: Any) -> dict[str, Any]:
    return {"keys": [Signer(key_for("ES256"), kid="a")], **extra}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "setting 'keys' is missing; it is required"),
        (_settings(lifetimes=5), "unknown setting 'lifetimes' \\(did you mean 'lifetime'\\?\\)"),
        (_settings(lifetime=0), "'lifetime' must be a number of seconds"),
        (_settings(lifetime=True), "'lifetime' must be a number of seconds"),
        (_settings(audience=[]), "'audience' must be a non-empty"),
        (_settings(audience=[3]), "'audience' must be a non-empty"),
        (_settings(issuer=""), "'issuer' must be a non-empty str"),
        (_settings(customers="alice"), "'customers' must be a list"),
        (_settings(claims={"sub": "x"}), "sets \\['sub'\\], which the plugin writes itself"),
        (_settings(claims={"x": object()}), "cannot be written as JSON"),
        (_settings(claims=["x"]), "'claims' must be a mapping"),
        (_settings(claims_for="f"), "'claims_for' must be callable"),
        (_settings(clock=5), "'clock' must be a callable"),
        (_settings(kid="b"), "'kid' is 'b', which no key has"),
        (_settings(subject_hash_key="short"), "'subject_hash_key' must be at least 32 bytes"),
        (_settings(subject_hash_key="env:ASAPP_TEST_MISSING"), "'ASAPP_TEST_MISSING', which is"),
        (_settings(subject_hash_key="file:/nonexistent/x"), "'/nonexistent/x' cannot be read"),
        (_settings(passphrase_env="ASAPP_TEST_MISSING"), "'ASAPP_TEST_MISSING', which is not set"),
        (_settings(algorithm=256), "'algorithm' must be a str"),
        ({"keys": []}, "'keys' must hold at least one key"),
        ({"keys": [3]}, "'keys\\[0\\]' must be a path"),
        ({"keys": [{"path": "x"}]}, "unknown or missing members"),
        ({"keys": ["/nonexistent/key.pem"]}, "'/nonexistent/key.pem' cannot be read"),
        ({"keys": ["env:ASAPP_TEST_MISSING"]}, "'ASAPP_TEST_MISSING', which is not set"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    """Each bad setting raises ConfigurationError naming the plugin and the setting."""
    with pytest.raises(ConfigurationError, match=message) as info:
        from_settings(settings)
    assert str(info.value).startswith("plugin 'jwt': ")


def test_several_keys_need_an_active_kid_and_distinct_kids() -> None:
    """With several keys the active kid must be named, and no two keys may share a kid."""
    a, b = Signer(key_for("ES256"), kid="a"), Signer(key_for("EdDSA"), kid="b")
    with pytest.raises(ConfigurationError, match="'kid' is needed with several keys"):
        from_settings({"keys": [a, b]})
    with pytest.raises(ConfigurationError, match="same kid"):
        from_settings({"keys": [a, Signer(key_for("EdDSA"), kid="a")], "kid": "a"})


def test_empty_key_file_is_refused(tmp_path: Path) -> None:
    """An empty key file is refused, naming the file."""
    path = tmp_path / "empty.pem"
    path.write_text("\n")
    with pytest.raises(ConfigurationError, match=r"empty\.pem' is empty"):
        from_settings({"keys": [str(path)]})


def test_error_messages_never_hold_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused secret (too short) is described, never quoted."""
    monkeypatch.setenv("ASAPP_TEST_HASH_KEY", "tiny-secret-value")
    with pytest.raises(ConfigurationError) as info:
        from_settings(_settings(subject_hash_key="env:ASAPP_TEST_HASH_KEY"))
    assert "tiny-secret-value" not in str(info.value)


def test_every_problem_is_reported_at_once_in_the_order_given(tmp_path: Path) -> None:
    """Bad settings are all reported by one error, each key of the list too, in the order the
    settings were given."""
    settings = {
        "lifetime": 0,
        "keys": [str(tmp_path / "a.pem"), str(tmp_path / "b.pem")],
        "audience": "",
        "kid": "k1",
    }
    with pytest.raises(ConfigurationError) as info:
        from_settings(settings)
    problems = info.value.problems
    assert [problem.split(" ")[1] for problem in problems] == [
        "'lifetime'",
        "'keys[0]':",
        "'keys[1]':",
        "'audience'",
    ]
    assert str(info.value).startswith("plugin 'jwt': 4 problems:")


def test_types_are_named_with_the_right_article() -> None:
    """Messages describe a value by its type with the article it takes ("an int", "an
    Ed448PrivateKey"), never "a int"."""
    with pytest.raises(ConfigurationError, match="has an int claim name"):
        from_settings(_settings(claims={1: "x"}))
    with pytest.raises(ConfigurationError, match="has a UUID claim name"):  # said "you-"
        from_settings(_settings(claims={uuid.UUID(int=1): "x"}))
    with pytest.raises(ConfigurationError, match="cannot sign with an Ed448PrivateKey"):
        Signer(ed448.Ed448PrivateKey.generate())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not a list"):
        from_settings(_settings(claims=["x"]))
