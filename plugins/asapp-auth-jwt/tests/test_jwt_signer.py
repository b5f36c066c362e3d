"""``Signer``: every algorithm's tokens verify with two independent verifiers; tampering fails."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt as pyjwt
import pytest
from asapp_auth_jwt import ALGORITHMS, Signer, load_key, load_signers, public_jwks
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.errors import BadSignatureError
from jwt_helpers import key_for, private_jwk, verify_joserfc, verify_pyjwt

from asapp_auth.errors import ConfigurationError


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "nbf": now, "exp": now + 60, "name": "Ålice ✓"}


def _segment(token: str, index: int) -> dict[str, object]:
    part = token.split(".")[index]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _flip(segment: str) -> str:
    """The segment with one base64url character changed."""
    head, tail = segment[:-2], segment[-2:]
    return head + ("A" if tail[0] != "A" else "B") + tail[1]


def test_every_listed_algorithm_is_tested() -> None:
    """The algorithms the issue asks for are exactly the ones offered."""
    assert set(ALGORITHMS) == {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
    }  # fmt: skip


def test_token_verifies_with_pyjwt(signer: Signer) -> None:
    """A token verifies with PyJWT and carries the claims as given."""
    claims = _claims()
    assert verify_pyjwt(signer.sign(claims), signer) == claims


def test_token_verifies_with_joserfc(signer: Signer) -> None:
    """A token verifies with joserfc, with the key imported from the published JWK."""
    claims = _claims()
    assert verify_joserfc(signer.sign(claims), signer) == claims


def test_header_has_alg_typ_and_kid(signer: Signer) -> None:
    """The header holds alg, typ JWT and, for public-key algorithms, the kid."""
    header = _segment(signer.sign(_claims()), 0)
    expected: dict[str, object] = {"alg": signer.algorithm, "typ": "JWT"}
    if signer.kid is not None:
        expected["kid"] = signer.kid
    assert header == expected
    assert (signer.kid is None) == signer.is_symmetric


def test_tampered_payload_fails_both_verifiers(signer: Signer) -> None:
    """Changing the payload after signing makes both verifiers refuse the token."""
    header, _, signature = signer.sign(_claims()).split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"sub": "mallory"}).encode()).rstrip(b"=")
    token = f"{header}.{forged.decode()}.{signature}"
    with pytest.raises(pyjwt.InvalidSignatureError):
        verify_pyjwt(token, signer)
    with pytest.raises(BadSignatureError):
        verify_joserfc(token, signer)


def test_tampered_signature_fails_both_verifiers(signer: Signer) -> None:
    """Changing one character of the signature makes both verifiers refuse the token."""
    header, payload, signature = signer.sign(_claims()).split(".")
    token = f"{header}.{payload}.{_flip(signature)}"
    with pytest.raises(pyjwt.InvalidSignatureError):
        verify_pyjwt(token, signer)
    with pytest.raises(BadSignatureError):
        verify_joserfc(token, signer)


def test_other_key_of_the_same_algorithm_does_not_verify(algorithm: str) -> None:
    """A token signed by one key does not verify with another key of the same algorithm."""
    if algorithm.startswith("HS"):
        other = Signer(b"k" * 64, algorithm=algorithm)
    elif algorithm.startswith(("RS", "PS")):
        other = Signer(_fresh_rsa(), algorithm=algorithm)
    else:
        other = Signer(_fresh(algorithm), algorithm=algorithm)
    token = Signer(key_for(algorithm), algorithm=algorithm).sign(_claims())
    with pytest.raises(pyjwt.InvalidSignatureError):
        verify_pyjwt(token, other)


_OTHER_RSA: list[object] = []


def _fresh_rsa() -> object:
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not _OTHER_RSA:
        _OTHER_RSA.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _OTHER_RSA[0]


def _fresh(algorithm: str) -> object:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}[algorithm]
    return ec.generate_private_key(curve())


@pytest.mark.parametrize(("algorithm", "size"), [("ES256", 64), ("ES384", 96), ("ES512", 132)])
def test_ecdsa_signature_is_jose_r_s_not_der(algorithm: str, size: int) -> None:
    """ECDSA signatures are the fixed-size r||s of RFC 7518, never DER (which starts 0x30)."""
    signer = Signer(key_for(algorithm), algorithm=algorithm)
    for _ in range(20):  # DER would vary in length; r||s never does
        signature = signer.sign(_claims()).split(".")[2]
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        assert len(raw) == size


def test_algorithm_defaults_to_the_one_the_key_fits() -> None:
    """Without an algorithm, the key decides: RS256, ES256/384/512, EdDSA or HS256."""
    assert Signer(key_for("RS256")).algorithm == "RS256"
    assert Signer(key_for("ES384")).algorithm == "ES384"
    assert Signer(key_for("ES512")).algorithm == "ES512"
    assert Signer(key_for("EdDSA")).algorithm == "EdDSA"
    assert Signer(b"s" * 32).algorithm == "HS256"


def test_kid_defaults_to_the_rfc7638_thumbprint() -> None:
    """A public-key signer's default kid is its key's RFC 7638 thumbprint; a given kid wins."""
    from joserfc.jwk import ECKey

    signer = Signer(key_for("ES256"))
    assert signer.kid == ECKey.import_key(signer.public_jwk()).thumbprint()
    assert Signer(key_for("ES256"), kid="k1").kid == "k1"


def test_extra_headers_are_added_and_none_removes_one() -> None:
    """headers= adds members and replaces typ or kid; a None value removes one."""
    signer = Signer(key_for("ES256"), kid="k1")
    token = signer.sign(_claims(), headers={"x5t": "abc", "typ": None, "kid": "k2"})
    assert _segment(token, 0) == {"alg": "ES256", "kid": "k2", "x5t": "abc"}
    assert verify_pyjwt(token, signer)["sub"] == "alice"


def test_header_alg_cannot_be_changed() -> None:
    """A header that would claim another algorithm is refused."""
    signer = Signer(key_for("ES256"))
    with pytest.raises(ConfigurationError, match="alg"):
        signer.sign(_claims(), headers={"alg": "none"})


def test_claims_that_are_not_json_are_refused() -> None:
    """Claims that JSON cannot hold raise ConfigurationError naming the type, not the value."""
    signer = Signer(key_for("ES256"))
    with pytest.raises(ConfigurationError, match="object"):
        signer.sign({"sub": object()})
    with pytest.raises(ConfigurationError):
        signer.sign({"exp": float("nan")})
    with pytest.raises(ConfigurationError, match="mapping"):
        signer.sign(["sub"])  # type: ignore[arg-type]


def test_repr_shows_algorithm_and_kid_only() -> None:
    """repr and str show the algorithm and kid and nothing of the key."""
    secret = b"super-secret-hmac-key-material!!"
    signer = Signer(secret, algorithm="HS256", kid="h1")
    assert repr(signer) == "Signer(algorithm='HS256', kid='h1')"
    assert str(signer) == repr(signer)


def test_public_jwk_members() -> None:
    """public_jwk holds the public members, kid, alg and use, and never a private member."""
    for algorithm in ("RS256", "ES256", "EdDSA"):
        jwk = Signer(key_for(algorithm), algorithm=algorithm, kid="k").public_jwk()
        assert jwk["kid"] == "k"
        assert jwk["alg"] == algorithm
        assert jwk["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)


def test_hmac_has_no_public_jwk() -> None:
    """An HMAC signer refuses to publish a JWK: its key is a shared secret."""
    signer = Signer(b"s" * 32, algorithm="HS256")
    with pytest.raises(ConfigurationError, match="shared secret"):
        signer.public_jwk()
    with pytest.raises(ConfigurationError):
        public_jwks([signer])


def test_public_jwks_lists_every_key_and_refuses_duplicate_kids() -> None:
    """public_jwks holds one JWK per signer; two signers with one kid are refused."""
    a = Signer(key_for("ES256"), kid="a")
    b = Signer(key_for("EdDSA"), kid="b")
    assert [k["kid"] for k in public_jwks([a, b])["keys"]] == ["a", "b"]
    with pytest.raises(ConfigurationError, match="kid"):
        public_jwks([a, Signer(key_for("EdDSA"), kid="a")])


def _pem(key: object, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def test_from_pem_path_and_bytes(tmp_path: Path) -> None:
    """from_pem loads a key from a path or from bytes, with the algorithm and kid given."""
    path = tmp_path / "key.pem"
    path.write_bytes(_pem(key_for("ES256")))
    for source in (path, str(path), path.read_bytes()):
        signer = Signer.from_pem(source, algorithm="ES256", kid="k1", passphrase=None)
        assert (signer.algorithm, signer.kid) == ("ES256", "k1")
        assert verify_pyjwt(signer.sign(_claims()), signer)["sub"] == "alice"


@pytest.mark.parametrize("passphrase", ["correct horse", b"correct horse"])
def test_from_pem_encrypted_with_passphrase(passphrase: str | bytes) -> None:
    """An encrypted PEM loads with its passphrase, given as str or bytes."""
    data = _pem(key_for("EdDSA"), b"correct horse")
    signer = Signer.from_pem(data, passphrase=passphrase)
    assert signer.public_jwk() == Signer(key_for("EdDSA")).public_jwk()


def test_from_pem_refusals(tmp_path: Path) -> None:
    """Missing or wrong passphrase, unneeded passphrase, public key, JSON: each a clear error."""
    encrypted = _pem(key_for("EdDSA"), b"correct horse")
    with pytest.raises(ConfigurationError, match="encrypted; give its passphrase"):
        Signer.from_pem(encrypted)
    with pytest.raises(ConfigurationError, match="passphrase is wrong"):
        Signer.from_pem(encrypted, passphrase="wrong")
    with pytest.raises(ConfigurationError, match="not encrypted"):
        Signer.from_pem(_pem(key_for("EdDSA")), passphrase="x")
    public = (
        key_for("EdDSA")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigurationError, match="public key"):
        Signer.from_pem(public)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        Signer.from_pem(tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="JSON, not PEM"):
        Signer.from_pem(b'{"kty": "oct"}')


@pytest.mark.parametrize("algorithm", ["RS256", "PS384", "ES256", "ES512", "EdDSA", "HS512"])
def test_from_jwk_reads_alg_and_kid(algorithm: str) -> None:
    """from_jwk builds the same key, with alg and kid from the JWK; algorithm= overrides."""
    key = key_for(algorithm)
    jwk = private_jwk(key)
    jwk.update(alg=algorithm, kid="from-jwk")
    signer = Signer.from_jwk(jwk)
    assert (signer.algorithm, signer.kid) == (algorithm, "from-jwk")
    assert verify_pyjwt(signer.sign(_claims()), Signer(key, algorithm=algorithm))["sub"] == "alice"
    if algorithm.startswith("RS"):
        assert Signer.from_jwk(jwk, algorithm="PS256").algorithm == "PS256"


def test_rsa_jwk_without_crt_members_loads() -> None:
    """An RSA JWK with only n, e and d is completed (primes recovered) and signs."""
    key = key_for("RS256")
    full = private_jwk(key)
    jwk = {m: full[m] for m in ("kty", "n", "e", "d")}
    signer = Signer.from_jwk(jwk, algorithm="RS256")
    assert verify_pyjwt(signer.sign(_claims()), Signer(key))["sub"] == "alice"


def test_jwk_refusals() -> None:
    """Public-only, encryption-use, mismatched and unknown JWKs are refused at load time."""
    signer = Signer(key_for("ES256"))
    with pytest.raises(ConfigurationError, match="public key"):
        Signer.from_jwk(signer.public_jwk())
    private = private_jwk(key_for("ES256"))
    with pytest.raises(ConfigurationError, match='"use"'):
        Signer.from_jwk({**private, "use": "enc"})
    with pytest.raises(ConfigurationError, match="do not match"):
        Signer.from_jwk({**private, "x": Signer(key_for("ES384")).public_jwk()["x"][:43]})
    with pytest.raises(ConfigurationError, match="kty"):
        Signer.from_jwk({"kty": "XYZ"})
    with pytest.raises(ConfigurationError, match="'k'"):
        Signer.from_jwk({"kty": "oct"})
    with pytest.raises(ConfigurationError, match="curve"):
        Signer.from_jwk({"kty": "OKP", "crv": "X25519", "d": "AA", "x": "AA"})


def test_load_key_sources(tmp_path: Path) -> None:
    """load_key reads a PEM path, PEM bytes, PEM text and a JWK dict or file."""
    key = key_for("ES256")
    pem = _pem(key)
    path = tmp_path / "k.pem"
    path.write_bytes(pem)
    jwk = private_jwk(key)
    jwk_path = tmp_path / "k.json"
    jwk_path.write_text(json.dumps(jwk))
    expected = key.private_numbers()
    for source in (path, str(path), pem, pem.decode(), jwk, jwk_path):
        loaded = load_key(source)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        assert loaded.private_numbers() == expected
    assert load_key({"kty": "oct", "k": "c2VjcmV0"}) == b"secret"


def test_load_signers_from_a_jwks_file(tmp_path: Path) -> None:
    """load_signers returns one signer per JWK of a JWKS, each with its alg and kid."""
    keys = []
    for kid, algorithm in (("old", "ES256"), ("new", "EdDSA")):
        jwk = private_jwk(key_for(algorithm))
        keys.append({**jwk, "kid": kid, "alg": algorithm})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    signers = load_signers(path)
    assert [(s.kid, s.algorithm) for s in signers] == [("old", "ES256"), ("new", "EdDSA")]
    with pytest.raises(ConfigurationError, match="kid"):
        load_signers(path, kid="x")
