"""``Signer``: JWS compact serialisation (RFC 7515) of JWT claims, on ``cryptography`` alone.

Every key and algorithm check happens when a ``Signer`` is made, so a signer that exists is safe
to sign with. ``sign`` is the hot path: the default header is encoded once, the JSON encoder and
the padding and hash objects are made once, and HMAC uses the standard library's one-shot digest.
"""

from __future__ import annotations

import hmac
import json
import os
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from asapp_auth.errors import ConfigurationError, type_with_article
from asapp_auth.secrets import read_secret_file

from ._keys import (
    CURVE_NAMES,
    ENTRY_POINT,
    PLUGIN,
    PRIVATE_KEY_TYPES,
    PrivateKey,
    SigningKey,
    b64url_encode,
    jwk_to_key,
    parse_key_data,
    public_jwk_of,
    thumbprint,
)

__all__ = ["ALGORITHMS", "Signer", "load_signers", "public_jwks"]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
# ES512 uses P-521, whose coordinates take 66 bytes.
_EC_CURVES = {"ES256": ("P-256", 32), "ES384": ("P-384", 48), "ES512": ("P-521", 66)}
_MIN_RSA_BITS = 2048

ALGORITHMS: tuple[str, ...] = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
    "HS256", "HS384", "HS512",
)  # fmt: skip
"""Every JWS algorithm a ``Signer`` signs with."""

_URL_SAFE = bytes.maketrans(b"+/", b"-_")
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# JSONEncoder.encode builds a new C encoder on every call; on the hot path build it once.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Callable[[Any, int], Any] | None = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",",
        False, False, False,
    )
)  # fmt: skip


def _default_algorithm(key: SigningKey) -> str:
    if isinstance(key, bytes):
        return "HS256"
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        crv = CURVE_NAMES.get(key.curve.name)
        for alg, (name, _) in _EC_CURVES.items():
            if name == crv:
                return alg
    raise ConfigurationError(
        f"{PLUGIN}: cannot sign with {type_with_article(key)}; use an RSA, EC (P-256, P-384, "
        "P-521) or Ed25519 private key, or bytes for HMAC"
    )


def _key_kind(key: object) -> str:
    if isinstance(key, bytes):
        return "an HMAC secret"
    if isinstance(key, rsa.RSAPrivateKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key on {CURVE_NAMES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key"
    return type_with_article(key)


def _make_sign(key: SigningKey, algorithm: str) -> Callable[[bytes], bytes]:
    """Check that ``key`` is safe for ``algorithm`` and return the function that signs bytes."""
    family, bits = algorithm[:2], algorithm[2:]

    def mismatch() -> ConfigurationError:
        return ConfigurationError(
            f"{PLUGIN}: algorithm {algorithm} cannot sign with {_key_kind(key)}; "
            "give a key of the algorithm's type, or the algorithm that fits the key"
        )

    if family == "HS":
        if not isinstance(key, bytes):
            raise mismatch()
        hash_name = f"sha{bits}"
        minimum = int(bits) // 8
        if len(key) < minimum:
            raise ConfigurationError(
                f"{PLUGIN}: the {algorithm} secret is {len(key)} bytes; it must be at least "
                f"{minimum} bytes (the hash size), for instance from secrets.token_bytes({minimum})"
            )
        secret = key
        digest = hmac.digest
        return lambda data: digest(secret, data, hash_name)
    if family in ("RS", "PS"):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise mismatch()
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigurationError(
                f"{PLUGIN}: the RSA key has {key.key_size} bits; it must have at least "
                f"{_MIN_RSA_BITS}"
            )
        hash_ = _HASHES[bits]()
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if family == "RS"
            else padding.PSS(mgf=padding.MGF1(_HASHES[bits]()), salt_length=hash_.digest_size)
        )
        rsa_sign = key.sign
        return lambda data: rsa_sign(data, pad, hash_)
    if family == "ES":
        crv, size = _EC_CURVES[algorithm]
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise mismatch()
        if CURVE_NAMES.get(key.curve.name) != crv:
            raise mismatch()
        ecdsa = ec.ECDSA(_HASHES[bits]())
        ec_sign = key.sign

        def sign_ec(data: bytes) -> bytes:
            # JOSE wants the fixed-size r||s form (RFC 7518 section 3.4), not DER.
            r, s = decode_dss_signature(ec_sign(data, ecdsa))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    # EdDSA
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise mismatch()
    return key.sign


class Signer:
    """Signs JWT claims with one key and one algorithm, as a JWS compact serialisation.

    ``key`` is a ``cryptography`` private key (RSA of 2048 bits or more, EC on P-256/P-384/P-521,
    Ed25519) or the bytes of an HMAC secret at least as long as the hash. ``algorithm`` defaults
    to the one the key fits (RS256, ES256/384/512, EdDSA, HS256). ``kid`` defaults, for public-key
    algorithms, to the key's RFC 7638 thumbprint, so the receiving side can pick the key from a
    JWKS; an HMAC signer has no ``kid`` unless given one. An unsafe or mismatched key raises
    ``ConfigurationError`` here, never later.
    """

    __slots__ = ("_algorithm", "_header", "_header_b64", "_key", "_kid", "_public", "_sign")

    def __init__(
        self,
        key: SigningKey | bytearray | str,
        algorithm: str | None = None,
        kid: str | None = None,
    ) -> None:
        if isinstance(key, bytearray | str):
            key = bytes(key, "utf-8") if isinstance(key, str) else bytes(key)
        if algorithm is None:
            algorithm = _default_algorithm(key)
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise ConfigurationError(
                f"{PLUGIN}: algorithm {algorithm!r} does not sign; tokens without a signature "
                f"are refused. Use one of {', '.join(ALGORITHMS)}"
            )
        if algorithm not in ALGORITHMS:
            raise ConfigurationError(
                f"{PLUGIN}: algorithm {algorithm!r} is not supported; use one of "
                f"{', '.join(ALGORITHMS)}"
            )
        if kid is not None and (not isinstance(kid, str) or not kid):
            raise ConfigurationError(f"{PLUGIN}: kid must be a non-empty str or None")
        self._sign = _make_sign(key, algorithm)
        self._key = key
        self._algorithm = algorithm
        self._public: dict[str, str] | None = None
        if not isinstance(key, bytes):
            self._public = public_jwk_of(key)
            if kid is None:
                kid = thumbprint(self._public)
        self._kid = kid
        self._header: dict[str, Any] = {"alg": algorithm, "typ": "JWT"}
        if kid is not None:
            self._header["kid"] = kid
        self._header_b64 = b64url_encode(_ENCODER.encode(self._header).encode("ascii"))

    @classmethod
    def from_pem(
        cls,
        path_or_bytes: str | os.PathLike[str] | bytes,
        algorithm: str | None = None,
        kid: str | None = None,
        passphrase: str | bytes | None = None,
    ) -> Signer:
        """A signer for the PEM private key in a file (a path) or in ``bytes``.

        An encrypted PEM needs ``passphrase``; a PEM that is not encrypted refuses one.
        """
        if isinstance(path_or_bytes, bytes):
            data, where = path_or_bytes, "given inline"
        else:
            data = read_secret_file(path_or_bytes, setting="key", plugin=ENTRY_POINT)
            where = f"in file {os.fspath(path_or_bytes)!r}"
        key = parse_key_data(data, where, passphrase)
        if isinstance(key, dict):
            raise ConfigurationError(
                f"{PLUGIN}: the key {where} is JSON, not PEM; use Signer.from_jwk"
            )
        return cls(key, algorithm=algorithm, kid=kid)

    @classmethod
    def from_jwk(
        cls, jwk: Mapping[str, Any], algorithm: str | None = None, kid: str | None = None
    ) -> Signer:
        """A signer for a private JWK; its ``alg`` and ``kid`` are used unless overridden here."""
        key = jwk_to_key(jwk)
        jwk_alg = jwk.get("alg")
        jwk_kid = jwk.get("kid")
        return cls(
            key,
            algorithm=algorithm if algorithm is not None else jwk_alg,
            kid=kid if kid is not None else jwk_kid,
        )

    @property
    def algorithm(self) -> str:
        """The JWS ``alg`` this signer writes, such as ``"ES256"``."""
        return self._algorithm

    @property
    def kid(self) -> str | None:
        """The key id written in the header, or ``None`` (an HMAC signer given none)."""
        return self._kid

    @property
    def is_symmetric(self) -> bool:
        """``True`` for HMAC: the key is a shared secret and has no public JWK."""
        return self._public is None

    def public_key(self) -> Any:
        """The ``cryptography`` public key, for verifying; HMAC has none."""
        if isinstance(self._key, bytes):
            raise self._no_public()
        return self._key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK with ``kid``, ``alg`` and ``use``, for the receiving side."""
        if self._public is None:
            raise self._no_public()
        jwk = dict(self._public)
        if self._kid is not None:
            jwk["kid"] = self._kid
        jwk["alg"] = self._algorithm
        jwk["use"] = "sig"
        return jwk

    def _no_public(self) -> ConfigurationError:
        return ConfigurationError(
            f"{PLUGIN}: an {self._algorithm} key is a shared secret: there is no public key to "
            "publish; give the receiving side the secret through a secure channel, or use a "
            "public-key algorithm"
        )

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """The JWS compact serialisation of ``claims`` (a JSON object).

        The header holds ``alg``, ``typ: "JWT"`` and ``kid``; ``headers`` adds members or
        replaces ``typ``/``kid`` (a ``None`` value removes one). ``alg`` cannot be changed.
        """
        if headers:
            header_b64 = b64url_encode(self._encode(self._merge_header(headers), "header"))
        else:
            header_b64 = self._header_b64
        if _C_ENCODE is not None and type(claims) is dict:
            # The hot path: one C call to encode, no ABC isinstance check.
            try:
                payload = "".join(_C_ENCODE(claims, 0)).encode("ascii")
            except (TypeError, ValueError):
                payload = self._encode(claims, "claims")  # raises the descriptive error
        elif isinstance(claims, Mapping):
            payload = self._encode(claims, "claims")
        else:
            raise ConfigurationError(
                f"{PLUGIN}: claims must be a mapping (a JSON object), not {type(claims).__name__}"
            )
        signing_input = (
            header_b64 + b"." + b2a_base64(payload, newline=False).translate(_URL_SAFE).rstrip(b"=")
        )
        signature = b2a_base64(self._sign(signing_input), newline=False)
        return (signing_input + b"." + signature.translate(_URL_SAFE).rstrip(b"=")).decode("ascii")

    def sign_bytes(self, payload: bytes, header: bytes | None = None) -> str:
        """A JWS compact serialisation of arbitrary ``payload`` bytes, with ``header`` as given.

        For exact byte-level control (test vectors, payloads that are not JSON objects). The
        header must be a JSON object whose ``alg`` is this signer's algorithm.
        """
        if header is None:
            header_b64 = self._header_b64
        else:
            try:
                parsed = json.loads(header)
            except ValueError:
                raise ConfigurationError(f"{PLUGIN}: the JWS header is not valid JSON") from None
            if not isinstance(parsed, dict) or parsed.get("alg") != self._algorithm:
                raise ConfigurationError(
                    f'{PLUGIN}: the JWS header must be a JSON object with "alg": '
                    f"{self._algorithm!r}"
                )
            header_b64 = b64url_encode(header)
        signing_input = header_b64 + b"." + b64url_encode(payload)
        return (signing_input + b"." + b64url_encode(self._sign(signing_input))).decode("ascii")

    def _merge_header(self, headers: Mapping[str, Any]) -> dict[str, Any]:
        if "alg" in headers and headers["alg"] != self._algorithm:
            raise ConfigurationError(
                f"{PLUGIN}: a signer for {self._algorithm} cannot write another alg in the header"
            )
        merged = dict(self._header)
        for name, value in headers.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        merged["alg"] = self._algorithm
        return merged

    @staticmethod
    def _encode(value: Mapping[str, Any], what: str) -> bytes:
        try:
            return _ENCODER.encode(value).encode("ascii")
        except (TypeError, ValueError) as exc:
            # The message describes a type ("Object of type X is not JSON serializable"),
            # never a value.
            raise ConfigurationError(
                f"{PLUGIN}: the JWT {what} cannot be written as JSON ({exc}); use str, int, "
                "float, bool, None, lists and dicts"
            ) from None

    def __repr__(self) -> str:
        return f"Signer(algorithm={self._algorithm!r}, kid={self._kid!r})"

    __str__ = __repr__


def load_signers(
    source: str | os.PathLike[str] | bytes | Mapping[str, Any] | PrivateKey | Signer,
    *,
    algorithm: str | None = None,
    kid: str | None = None,
    passphrase: str | bytes | None = None,
    where: str | None = None,
    named_by: str = "setting 'passphrase_env'",
) -> list[Signer]:
    """Signers for every key in ``source``: a PEM or JWK or JWKS file (a path), PEM or JSON
    bytes, a JWK or JWKS dict, a key object, or a ``Signer`` (returned as it is).

    ``algorithm`` and ``kid`` apply where the key does not say its own (a JWK's ``alg``/``kid``
    win); ``kid`` is refused for a JWKS, whose keys each need their own. ``where`` says where the
    key came from, and ``named_by`` what names a passphrase, in error messages.
    """
    if isinstance(source, Signer):
        return [source]
    if isinstance(source, PRIVATE_KEY_TYPES):
        return [Signer(source, algorithm=algorithm, kid=kid)]
    parsed: SigningKey | Mapping[str, Any]
    if isinstance(source, Mapping):
        parsed, label = source, where or "given inline"
    else:
        if isinstance(source, bytes):
            data, label = source, where or "given inline"
        elif isinstance(source, str | os.PathLike):
            data = read_secret_file(source, setting="keys", plugin=ENTRY_POINT)
            label = where or f"in file {os.fspath(source)!r}"
        else:
            raise ConfigurationError(
                f"{PLUGIN}: a key must be a path, PEM or JSON bytes, a JWK or JWKS dict, a key "
                f"object or a Signer, not {type(source).__name__}"
            )
        parsed = parse_key_data(data, label, passphrase, named_by)
    if not isinstance(parsed, Mapping):
        return [Signer(parsed, algorithm=algorithm, kid=kid)]
    if "keys" in parsed:
        members = parsed["keys"]
        if not isinstance(members, list) or not members:
            raise ConfigurationError(f"{PLUGIN}: the JWKS {label} has no keys")
        if kid is not None:
            raise ConfigurationError(
                f"{PLUGIN}: a kid cannot be given for the JWKS {label}; give each JWK its own"
            )
        return [_jwk_signer(jwk, algorithm, None, f"#{i} of the JWKS {label}")
                for i, jwk in enumerate(members)]  # fmt: skip
    return [_jwk_signer(parsed, algorithm, kid, label)]


def _jwk_signer(
    jwk: Mapping[str, Any], algorithm: str | None, kid: str | None, where: str
) -> Signer:
    key = jwk_to_key(jwk, where)
    return Signer(
        key,
        algorithm=jwk.get("alg") or algorithm,
        kid=jwk.get("kid") or kid,
    )


def public_jwks(signers: Iterable[Signer]) -> dict[str, list[dict[str, str]]]:
    """The JWKS (``{"keys": [...]}``) of the signers' public keys, for the receiving side.

    Every signer must have a public key and a distinct ``kid``.
    """
    keys: list[dict[str, str]] = []
    seen: set[str | None] = set()
    for signer in signers:
        jwk = signer.public_jwk()
        if signer.kid in seen:
            raise ConfigurationError(
                f"{PLUGIN}: two keys share kid {signer.kid!r}; give each key its own kid"
            )
        seen.add(signer.kid)
        keys.append(jwk)
    return {"keys": keys}
