"""``JWTProvider``: the plugin object, minting one signed JWT per customer context."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from asapp_auth import AuthContext, Customer, hookimpl
from asapp_auth.errors import (
    AsappAuthError,
    ConfigurationError,
    ProviderError,
    type_with_article,
)
from asapp_auth.plugins import SettingsProblems
from asapp_auth.secrets import read_secret_file, resolve_secret

from ._keys import ENTRY_POINT, PLUGIN, PRIVATE_KEY_TYPES
from ._signer import Signer, load_signers, public_jwks

__all__ = [
    "RESERVED_CLAIMS",
    "SETTINGS",
    "JWTProvider",
    "from_settings",
    "signers_from_settings",
]

RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "iat", "nbf", "exp", "jti"})
"""Claims the provider writes itself; extra claims may not set them."""

SETTINGS = frozenset({
    "keys", "kid", "algorithm", "passphrase_env", "issuer", "audience", "lifetime",
    "subject_hash_key", "claims", "claims_for", "customers", "clock",
})  # fmt: skip
"""Every setting ``from_settings`` accepts."""

DEFAULT_LIFETIME = 300
_MIN_HASH_KEY = 32

_log = logging.getLogger("asapp_auth_jwt")


def _fail(setting: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"{PLUGIN}: setting {setting!r} {problem}")


def _check_extra_claims(claims: object, what: str) -> dict[str, Any]:
    if not isinstance(claims, Mapping):
        raise _fail(
            what, f"must be a mapping of claim names to values, not {type_with_article(claims)}"
        )
    reserved = sorted(RESERVED_CLAIMS.intersection(claims))
    if reserved:
        raise _fail(
            what,
            f"sets {reserved}, which the plugin writes itself; use the 'issuer', 'audience', "
            "'lifetime' and 'subject_hash_key' settings instead",
        )
    for name in claims:
        if not isinstance(name, str):
            raise _fail(what, f"has {type_with_article(name)} claim name; names must be str")
    return dict(claims)


def _check_signers(keys: object) -> list[Signer]:
    signers = [keys] if isinstance(keys, Signer) else list(keys)  # type: ignore[call-overload]
    if not signers or not all(isinstance(s, Signer) for s in signers):
        raise _fail("keys", "must hold at least one key (Signer objects, in code)")
    kids = [s.kid for s in signers]
    if len(set(kids)) != len(kids):
        raise _fail("keys", "holds two keys with the same kid; give each key its own kid")
    return signers


def _active(signers: list[Signer], kid: str | None) -> Signer:
    kids = [s.kid for s in signers]
    if kid is None:
        if len(signers) > 1:
            raise _fail(
                "kid", f"is needed with several keys: name the one that signs, among {kids}"
            )
        return signers[0]
    found = [s for s in signers if s.kid == kid]
    if not found:
        raise _fail("kid", f"is {kid!r}, which no key has; the keys' kids are {kids}")
    return found[0]


def _check_issuer(issuer: object) -> str | None:
    if issuer is not None and (not isinstance(issuer, str) or not issuer):
        raise _fail("issuer", "must be a non-empty str")
    return issuer


def _check_audience(audience: object) -> str | list[str] | None:
    if audience is None:
        return None
    if isinstance(audience, str):
        if not audience:
            raise _fail("audience", "must be a non-empty str or list of str")
        return audience
    if (
        not isinstance(audience, Sequence)
        or not audience
        or not all(isinstance(a, str) and a for a in audience)
    ):
        raise _fail("audience", "must be a non-empty str or list of str")
    return list(audience)


def _check_lifetime(lifetime: object) -> int:
    if (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, int | float)
        or not math.isfinite(lifetime)
        or lifetime < 1
    ):
        raise _fail("lifetime", "must be a number of seconds, at least 1")
    return int(lifetime)


def _check_hash_key(subject_hash_key: object) -> bytes | None:
    if subject_hash_key is None:
        return None
    hash_key = (
        subject_hash_key.encode("utf-8") if isinstance(subject_hash_key, str) else subject_hash_key
    )
    if not isinstance(hash_key, bytes) or len(hash_key) < _MIN_HASH_KEY:
        raise _fail(
            "subject_hash_key",
            f"must be at least {_MIN_HASH_KEY} bytes, for instance secrets.token_urlsafe(32)",
        )
    return hash_key


def _check_callable(name: str, value: object, what: str) -> Any:
    if value is not None and not callable(value):
        raise _fail(name, f"must be {what}, not {type(value).__name__}")
    return value


def _check_customers(customers: object) -> frozenset[str] | None:
    if customers is None:
        return None
    if isinstance(customers, str) or not isinstance(customers, Iterable):
        raise _fail("customers", "must be a list of customer ids, not a str")
    ids = frozenset(customers)
    if not ids or not all(isinstance(c, str) and c for c in ids):
        raise _fail("customers", "must be a non-empty list of non-empty str")
    return ids


def _check_options(
    problems: SettingsProblems, signer: Signer | None, **given: Any
) -> dict[str, Any]:
    """Every option of ``JWTProvider`` but its keys, checked; their problems kept in
    ``problems``. ``signer`` checks that the extra claims can be written, when known."""
    options: dict[str, Any] = {
        "issuer": problems.check("issuer", _check_issuer, given["issuer"]),
        "audience": problems.check("audience", _check_audience, given["audience"]),
        "lifetime": problems.check("lifetime", _check_lifetime, given["lifetime"]),
        "subject_hash_key": problems.check(
            "subject_hash_key", _check_hash_key, given["subject_hash_key"]
        ),
        "claims": problems.check("claims", _check_extra_claims, given["claims"] or {}, "claims"),
        "claims_for": problems.check(
            "claims_for", _check_callable, "claims_for", given["claims_for"], "callable"
        ),
        "customers": problems.check("customers", _check_customers, given["customers"]),
        "clock": problems.check(
            "clock", _check_callable, "clock", given["clock"], "a callable returning POSIX seconds"
        ),
    }
    if signer is not None and options["claims"] is not None:
        # Checked now, so that a claim that cannot be JSON fails at configuration time.
        problems.check("claims", signer._encode, options["claims"], "claims")
    return options


class JWTProvider:
    """Answers ``provide_context`` with ``{"Auth": {"Token": <JWT>}}`` for each customer.

    Each call mints a new token: ``sub`` is the customer id (or its HMAC-SHA256, hex, under
    ``subject_hash_key``), with ``iss``/``aud`` when set, ``iat``/``nbf`` now, ``exp`` after
    ``lifetime`` seconds, a random ``jti``, then ``claims`` and ``claims_for(customer_id)``. The
    context expires with the token. ``keys`` may hold several signers (rotation): the one whose
    kid is ``kid`` signs, and ``jwks()`` publishes all of them.
    """

    def __init__(
        self,
        keys: Signer | Sequence[Signer],
        *,
        kid: str | None = None,
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        lifetime: float = DEFAULT_LIFETIME,
        subject_hash_key: bytes | str | None = None,
        claims: Mapping[str, Any] | None = None,
        claims_for: Callable[[str], Mapping[str, Any] | None] | None = None,
        customers: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        problems = SettingsProblems(ENTRY_POINT)
        signers = problems.check("keys", _check_signers, keys)
        active = None if signers is None else problems.check("kid", _active, signers, kid)
        options = _check_options(
            problems,
            active,
            issuer=issuer,
            audience=audience,
            lifetime=lifetime,
            subject_hash_key=subject_hash_key,
            claims=claims,
            claims_for=claims_for,
            customers=customers,
            clock=clock,
        )
        problems.raise_any()
        assert signers is not None
        assert active is not None
        self._signer = active
        self._signers = tuple(signers)
        self._issuer: str | None = options["issuer"]
        self._audience: str | list[str] | None = options["audience"]
        self._lifetime: int = options["lifetime"]
        self._hash_key: bytes | None = options["subject_hash_key"]
        self._claims: dict[str, Any] = options["claims"]
        self._claims_for: Callable[[str], Mapping[str, Any] | None] | None = options["claims_for"]
        self._customers: frozenset[str] | None = options["customers"]
        self._clock: Callable[[], float] = options["clock"]

    @property
    def signer(self) -> Signer:
        """The signer of the active kid."""
        return self._signer

    @property
    def signers(self) -> tuple[Signer, ...]:
        """Every configured signer, the active one among them."""
        return self._signers

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWKS of every configured public key, for the receiving side to verify."""
        return public_jwks(s for s in self._signers if not s.is_symmetric)

    def subject(self, customer_id: str) -> str:
        """The ``sub`` claim for ``customer_id``."""
        if self._hash_key is None:
            return customer_id
        return hmac.new(self._hash_key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def claims(self, customer_id: str) -> dict[str, Any]:
        """The claims of a token for ``customer_id``, minted now."""
        now = int(self._clock())
        claims: dict[str, Any] = {}
        if self._issuer is not None:
            claims["iss"] = self._issuer
        claims["sub"] = self.subject(customer_id)
        if self._audience is not None:
            claims["aud"] = self._audience
        claims["iat"] = now
        claims["nbf"] = now
        claims["exp"] = now + self._lifetime
        claims["jti"] = secrets.token_urlsafe(16)
        claims.update(self._claims)
        if self._claims_for is not None:
            try:
                extra = self._claims_for(customer_id)
            except AsappAuthError:
                raise
            except Exception as exc:
                raise ProviderError(
                    f"{PLUGIN}: claims_for raised {type(exc).__name__}; fix the function",
                    plugin=ENTRY_POINT,
                    customer_id=customer_id,
                ) from exc
            if extra is not None:
                try:
                    claims.update(_check_extra_claims(extra, "claims_for"))
                except ConfigurationError as exc:
                    raise ProviderError(
                        f"{exc} (returned for this customer)",
                        plugin=ENTRY_POINT,
                        customer_id=customer_id,
                    ) from None
        return claims

    def mint(self, customer_id: str) -> tuple[str, int]:
        """A new token for ``customer_id`` and its ``exp``."""
        claims = self.claims(customer_id)
        try:
            token = self._signer.sign(claims)
        except ConfigurationError as exc:
            raise ProviderError(str(exc), plugin=ENTRY_POINT, customer_id=customer_id) from None
        _log.debug("minted a JWT (kid=%s, exp=%d)", self._signer.kid, claims["exp"])
        return token, claims["exp"]

    @hookimpl
    def provide_context(self, customer: Customer, needs_refresh: bool) -> AuthContext | None:
        """A freshly signed token for the customer, or ``None`` for a customer not served."""
        if self._customers is not None and customer.id not in self._customers:
            return None
        token, exp = self.mint(customer.id)
        return AuthContext({"Auth": {"Token": token}}, expires_at=exp, source=PLUGIN)

    def __repr__(self) -> str:
        return (
            f"JWTProvider(algorithm={self._signer.algorithm!r}, kid={self._signer.kid!r}, "
            f"keys={len(self._signers)}, lifetime={self._lifetime})"
        )


def _passphrase(value: object, setting: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(setting, "must name an environment variable (a non-empty str)")
    return resolve_secret(f"env:{value}", setting=setting, plugin=ENTRY_POINT)


def _load_key_setting(
    item: object, algorithm: str | None, passphrase: str | None, index: int
) -> list[Signer]:
    label = f"keys[{index}]"
    if isinstance(item, (Signer, *PRIVATE_KEY_TYPES)):
        return load_signers(item, algorithm=algorithm)
    if isinstance(item, str):
        return _load_key_string(item, algorithm, None, passphrase, label)
    if isinstance(item, Mapping):
        if "kty" in item or "keys" in item:
            return load_signers(item, algorithm=algorithm, where=f"in setting {label!r}")
        unknown = sorted(set(item) - {"pem", "kid", "algorithm", "passphrase_env"})
        if unknown or "pem" not in item:
            raise _fail(
                label,
                "must be a JWK, a JWKS, or {'pem': PATH, 'kid': ..., 'algorithm': ..., "
                f"'passphrase_env': ...}}; unknown or missing members: {unknown or ['pem']}",
            )
        pem = item["pem"]
        if not isinstance(pem, str):
            raise _fail(f"{label}.pem", "must be a path, 'env:NAME' or 'file:PATH'")
        own = _passphrase(item.get("passphrase_env"), f"{label}.passphrase_env")
        return _load_key_string(
            pem,
            item.get("algorithm") or algorithm,
            item.get("kid"),
            own if own is not None else passphrase,
            label,
            own_passphrase=own is not None,
        )
    raise _fail(
        label,
        "must be a path (or 'env:NAME'), a JWK or JWKS dict, {'pem': ...}, a key object or a "
        f"Signer, not {type(item).__name__}",
    )


def _load_key_string(
    value: str,
    algorithm: str | None,
    kid: str | None,
    passphrase: str | None,
    label: str,
    *,
    own_passphrase: bool = False,
) -> list[Signer]:
    if value.startswith("env:"):
        data = resolve_secret(value, setting=label, plugin=ENTRY_POINT).encode("utf-8")
        where = f"from environment variable {value[4:]!r} (setting {label!r})"
    elif value.lstrip().startswith("-----BEGIN"):
        data, where = value.encode("utf-8"), f"in setting {label!r}"
    else:
        path = value[5:] if value.startswith("file:") else value
        data, where = read_secret_file(path, setting=label, plugin=ENTRY_POINT), f"in file {path!r}"
    # The plugin-wide passphrase is for the encrypted PEM keys among several; a key's own
    # passphrase must fit it.
    if not own_passphrase and b"ENCRYPTED" not in data:
        passphrase = None
    return load_signers(data, algorithm=algorithm, kid=kid, passphrase=passphrase, where=where)


def _check_algorithm(algorithm: object) -> None:
    if algorithm is not None and not isinstance(algorithm, str):
        raise _fail("algorithm", "must be a str such as 'ES256'")


def _signers(keys: object, algorithm: str | None, passphrase: str | None) -> list[Signer]:
    """The signers of every item of ``keys``; the problems of all of them at once."""
    items = keys if isinstance(keys, list | tuple) else [keys]
    problems = SettingsProblems(ENTRY_POINT)
    signers: list[Signer] = []
    for index, item in enumerate(items):
        loaded = problems.check(
            f"keys[{index}]", _load_key_setting, item, algorithm, passphrase, index
        )
        signers.extend(loaded or [])
    problems.raise_any()
    return signers


def signers_from_settings(
    keys: object, algorithm: object = None, passphrase_env: object = None
) -> list[Signer]:
    """The signers of the ``keys`` setting (one item or a list), as ``from_settings`` loads them."""
    _check_algorithm(algorithm)
    passphrase = _passphrase(passphrase_env, "passphrase_env")
    return _signers(keys, algorithm, passphrase)  # type: ignore[arg-type]


def from_settings(settings: Mapping[str, Any]) -> JWTProvider:
    """The plugin object for a pipeline's ``jwt`` settings (see the README for each one).

    Every problem of the settings is reported at once, in the order they were given.
    """
    problems = SettingsProblems(ENTRY_POINT, settings, known=SETTINGS)
    algorithm = settings.get("algorithm")
    problems.check("algorithm", _check_algorithm, algorithm)
    passphrase = problems.check(
        "passphrase_env", _passphrase, settings.get("passphrase_env"), "passphrase_env"
    )
    signers = None
    if "keys" not in settings:
        problems.add(
            "keys",
            "setting 'keys' is missing; it is required: a PEM file path, a JWK or JWKS, or a list "
            "of them",
        )
    elif not problems.failed("algorithm", "passphrase_env"):
        signers = problems.check("keys", _signers, settings["keys"], algorithm, passphrase)
    hash_key = settings.get("subject_hash_key")
    if hash_key is not None and not isinstance(hash_key, bytes):
        hash_key = problems.check(
            "subject_hash_key",
            resolve_secret,
            hash_key,
            setting="subject_hash_key",
            plugin=ENTRY_POINT,
        )
    options = {
        name: settings[name]
        for name in ("kid", "issuer", "audience", "lifetime", "claims", "claims_for",
                     "customers", "clock")
        if settings.get(name) is not None
    }  # fmt: skip
    provider = None
    if signers is not None:
        provider = problems.check(None, JWTProvider, signers, subject_hash_key=hash_key, **options)
    elif not problems.failed("subject_hash_key"):
        # No keys to build the provider with: still check its other settings, for the report.
        defaults = {
            "issuer": None, "audience": None, "lifetime": DEFAULT_LIFETIME, "claims": None,
            "claims_for": None, "customers": None, "clock": time.time,
        }  # fmt: skip
        options.pop("kid", None)
        _check_options(problems, None, **{**defaults, **options, "subject_hash_key": hash_key})
    problems.raise_any()
    assert provider is not None
    return provider
