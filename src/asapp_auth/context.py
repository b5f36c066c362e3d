"""``AuthContext``: the agreed dictionary a provider returns, validated, frozen and redacted."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from .errors import InvalidContextError, type_with_article

__all__ = ["AuthContext"]

# Values under these top-level keys are shown in repr; every other leaf value is redacted.
_SHOWN_KEYS = frozenset({"Scopes", "Segments", "ExternalSessionType", "CompanySubdivision"})
_REDACTED = "<redacted>"

# RFC 9110 token characters, for header and cookie names.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Control characters anywhere, or white space at either end (h11 refuses it, quoting the value).
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$")
_BAD_COOKIE_VALUE = re.compile(r"[\x00-\x20\x7f\";,\\]")

_STR_KEYS = ("ExternalSessionId", "ExternalSessionType", "CompanySubdivision")
# The schema's own keys, by their lower-case form: a key that differs from one only in case is
# a misspelling the platform would not read, and the default attacher would silently skip.
_TOP_KEYS = {k.lower(): k for k in ("Auth", "CustomerInfo", "Segments", *_STR_KEYS)}
_AUTH_KEYS = {k.lower(): k for k in ("Token", "Headers", "Cookies", "Body", "Scopes")}


class AuthContext(Mapping[str, Any]):
    """An immutable, validated context dictionary with its expiry, when known.

    The schema is the platform's: ``Auth`` may hold ``Token`` (str), ``Headers`` and ``Cookies``
    (str to str), ``Body`` (a JSON object) and ``Scopes`` (list of str); beside it ``CustomerInfo``
    (str to str), ``ExternalSessionId``, ``ExternalSessionType``, ``CompanySubdivision`` (str) and
    ``Segments`` (list of str). ``Auth.Token`` is a non-empty str when given. Keys are
    case-sensitive: one that differs from the schema's only in case is refused. Unknown keys are
    kept as they are. Nested mappings become read-only and lists become tuples. ``repr`` and
    ``str`` redact every value that could be a secret.

    Give at most one of ``expires_in`` (seconds from now) and ``expires_at`` (an aware
    ``datetime`` or a POSIX timestamp). ``source`` names who built it, for error messages.

    ``state`` (str to str) is the provider's own, kept with the context but never attached to a
    request nor shown: a refresh token, say. A shared cache stores it sealed with the context, and
    the provider gets it back as ``previous.state`` when asked to refresh, so the one process
    that refreshes for a fleet always starts from the newest state.
    """

    __slots__ = ("_data", "_expires_in", "_expires_ts", "_size", "_state")

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        expires_in: float | None = None,
        expires_at: datetime | float | None = None,
        source: str = "the context provider",
        state: Mapping[str, str] | None = None,
    ) -> None:
        self._data: Mapping[str, Any]
        self._data, self._size = _validate(data, source)
        # The expiry is kept once, as a POSIX timestamp: a pipeline may hold 100,000 of these.
        self._expires_in, self._expires_ts = _expiry(expires_in, expires_at, source)
        self._state = _check_state(state, source)

    @property
    def state(self) -> Mapping[str, str]:
        """The provider's own state kept with this context (read-only; empty when none)."""
        return self._state or _NO_STATE

    @property
    def expires_in(self) -> float | None:
        """Lifetime in seconds, counted from when this context was made; ``None``: unknown."""
        return self._expires_in

    @property
    def expires_at(self) -> datetime | None:
        """When the context expires (UTC), or ``None`` when unknown."""
        if self._expires_ts is None:
            return None
        return datetime.fromtimestamp(self._expires_ts, tz=UTC)

    def remaining(self) -> float | None:
        """Seconds left before it expires, by the wall clock now; ``None`` when unknown.

        Unlike ``expires_in``, this counts down: a context made earlier and returned again by
        a provider's own cache has less left than its original lifetime.
        """
        if self._expires_ts is None:
            return None
        return self._expires_ts - time.time()

    @property
    def token(self) -> str | None:
        """``Auth.Token``, the value most platforms authenticate with, or ``None``."""
        auth = self._data.get("Auth")
        return None if auth is None else auth.get("Token")

    def with_expiry(
        self, *, expires_in: float | None = None, expires_at: datetime | float | None = None
    ) -> AuthContext:
        """A copy of this context with another expiry."""
        return AuthContext(
            self.to_dict(), expires_in=expires_in, expires_at=expires_at, state=self._state
        )

    def redacted(self) -> dict[str, Any]:
        """The context with every value that could be a secret replaced, for display."""
        return _redact_context(self._data)

    def to_dict(self) -> dict[str, Any]:
        """A deep, mutable copy of the context dictionary (lists are lists again)."""
        thawed = _thaw(self._data)
        assert isinstance(thawed, dict)
        return thawed

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form of the context and its expiry, for cache backends to store.

        It holds the secrets: seal it (``asapp_auth.sealing``) before it leaves the process.
        """
        return {
            "data": self.to_dict(),
            "expires_in": self._expires_in,
            "expires_ts": self._expires_ts,
            "state": dict(self._state or {}),
        }

    @classmethod
    def from_record(cls, record: Any, *, source: str = "a cache backend") -> AuthContext:
        """The context ``to_record`` gave, validated again; ``InvalidContextError`` if malformed."""
        if not isinstance(record, Mapping) or set(record) != _RECORD_KEYS:
            raise InvalidContextError(f"{source} holds a context record of the wrong shape")
        expires_in, expires_ts = record["expires_in"], record["expires_ts"]
        numbers = [v for v in (expires_in, expires_ts) if v is not None]
        if (expires_in is None) != (expires_ts is None) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in numbers
        ):
            raise InvalidContextError(f"{source} holds a context record with a malformed expiry")
        context = cls.__new__(cls)
        context._data, context._size = _validate(record["data"], source)
        context._expires_in = None if expires_in is None else float(expires_in)
        context._expires_ts = None if expires_ts is None else float(expires_ts)
        context._state = _check_state(record["state"], source)
        return context

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        expiry = "" if self._expires_in is None else f", expires_in={self._expires_in:.0f}"
        return f"AuthContext({self.redacted()!r}{expiry})"

    __str__ = __repr__


_NO_STATE: Mapping[str, str] = MappingProxyType({})
_RECORD_KEYS = frozenset({"data", "expires_in", "expires_ts", "state"})


def _check_state(state: object, source: str) -> Mapping[str, str] | None:
    if state is None or (isinstance(state, Mapping) and not state):
        return None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in state.items()
    ):
        raise InvalidContextError(
            f"{source} gave a state that is not a mapping of str to str; keep provider state "
            "(a refresh token, say) as strings"
        )
    return MappingProxyType(dict(state))


def _redact(value: Any, *, shown: bool) -> Any:
    if isinstance(value, Mapping):
        return {k: _redact(v, shown=shown) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_redact(v, shown=shown) for v in value]
    # None holds no secret, and "<redacted>" in its place would suggest a value that is not there.
    return value if shown or value is None else _REDACTED


def _redact_context(data: Mapping[str, Any]) -> dict[str, Any]:
    # Only the schema's own public places are shown: those top-level keys and Auth.Scopes. A
    # key named like them deeper down (Auth.Headers.Segments) is redacted like any other.
    shown: dict[str, Any] = {}
    for key, value in data.items():
        if key == "Auth" and isinstance(value, Mapping):
            shown[key] = {k: _redact(v, shown=k == "Scopes") for k, v in value.items()}
        else:
            shown[key] = _redact(value, shown=key in _SHOWN_KEYS)
    return shown


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _fail(source: str, where: str, problem: str) -> InvalidContextError:
    return InvalidContextError(
        f"{source} returned a context whose {where} {problem}; "
        "fix the provider so that it follows the agreed context schema"
    )


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_spelling(keys: Any, schema: Mapping[str, str], source: str, where: str) -> None:
    for key in keys:
        expected = schema.get(key.lower()) if isinstance(key, str) else None
        if expected is not None and key != expected:
            raise InvalidContextError(
                f"{source} returned a context with the key {where}{key!r}, which the schema "
                f"spells {where}{expected!r}; keys are case-sensitive: fix the spelling"
            )


def _check_str_map(value: Any, source: str, where: str, *, cookies: bool = False) -> None:
    if not isinstance(value, Mapping):
        raise _fail(source, where, f"is {type_with_article(value)}, not a mapping of str to str")
    for name, item in value.items():
        if not isinstance(name, str) or not isinstance(item, str):
            raise _fail(
                source,
                f"{where} entry {name!r}" if isinstance(name, str) else where,
                f"has {type_with_article(name)} key and {type_with_article(item)} value; "
                "both must be str",
            )
        if where.endswith(("Headers", "Cookies")) and not _TOKEN.match(name):
            raise _fail(source, f"{where} name {name!r}", "is not a valid HTTP token")
        bad = _BAD_COOKIE_VALUE if cookies else _BAD_HEADER_VALUE
        if where.endswith(("Headers", "Cookies")) and bad.search(item):
            raise _fail(source, f"{where} entry {name!r}", "holds characters not allowed there")


def _check_str_list(value: Any, source: str, where: str) -> None:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _fail(source, where, f"is {type_with_article(value)}, not a list of str")
    for item in value:
        if not isinstance(item, str):
            raise _fail(source, where, f"holds {type_with_article(item)}; every item must be str")


def _check_token(token: object, source: str) -> None:
    if token is None:
        raise _fail(
            source,
            "Auth.Token",
            "is None, so no token would be sent: leave the key out when the context authenticates "
            "otherwise, or return None to let the next provider answer",
        )
    if not isinstance(token, str):
        raise _fail(source, "Auth.Token", f"is {type_with_article(token)}; it must be a str")
    if not token:
        raise _fail(source, "Auth.Token", "is empty; it must hold the token")
    if _BAD_HEADER_VALUE.search(token):
        raise _fail(source, "Auth.Token", "holds characters not allowed in a header")


def _validate(data: Any, source: str) -> tuple[Mapping[str, Any], int]:
    """The data frozen, and the length of its compact JSON form (which a size limit checks)."""
    if isinstance(data, AuthContext):
        return data._data, data._size
    if not isinstance(data, Mapping):
        raise InvalidContextError(
            f"{source} returned {type_with_article(data)}, not a context mapping such as "
            "{'Auth': {'Token': ...}}; return a dict, an AuthContext, or None to pass"
        )
    if not data:
        raise InvalidContextError(
            f"{source} returned an empty context; return None to let the next provider answer"
        )
    for key in data:
        if not isinstance(key, str):
            raise _fail(source, "top level", f"has {type_with_article(key)} key; keys must be str")
    _check_spelling(data, _TOP_KEYS, source, "")
    if "Auth" in data:
        auth = data["Auth"]
        if not isinstance(auth, Mapping):
            raise _fail(source, "Auth", f"is {type_with_article(auth)}, not a mapping")
        _check_spelling(auth, _AUTH_KEYS, source, "Auth.")
        if "Token" in auth:
            _check_token(auth["Token"], source)
        if "Headers" in auth:
            _check_str_map(auth["Headers"], source, "Auth.Headers")
        if "Cookies" in auth:
            _check_str_map(auth["Cookies"], source, "Auth.Cookies", cookies=True)
        if "Body" in auth:
            body = auth["Body"]
            if not isinstance(body, Mapping):
                raise _fail(source, "Auth.Body", f"is {type_with_article(body)}, not a JSON object")
            try:
                json.dumps(body)
            except (TypeError, ValueError):
                raise _fail(source, "Auth.Body", "is not serialisable as JSON") from None
        if "Scopes" in auth:
            _check_str_list(auth["Scopes"], source, "Auth.Scopes")
    if "CustomerInfo" in data:
        _check_str_map(data["CustomerInfo"], source, "CustomerInfo")
    for key in _STR_KEYS:
        if key in data and not isinstance(data[key], str):
            raise _fail(source, key, f"is {type_with_article(data[key])}, not a str")
    if "Segments" in data:
        _check_str_list(data["Segments"], source, "Segments")
    size = 1 + 2 * len(data)  # the braces, a colon per key and a comma between items
    for key, value in data.items():
        try:
            size += len(json.dumps(key)) + len(json.dumps(value, separators=(",", ":")))
        except (TypeError, ValueError):
            raise _fail(source, key, "is not serialisable as JSON") from None
    frozen = _freeze(data)
    assert isinstance(frozen, Mapping)
    return frozen, size


def _expiry(
    expires_in: float | None, expires_at: datetime | float | None, source: str
) -> tuple[float | None, float | None]:
    if expires_in is not None and expires_at is not None:
        raise InvalidContextError(f"{source} gave both expires_in and expires_at; give one")
    now = time.time()
    if expires_at is not None:
        if isinstance(expires_at, datetime):
            if expires_at.tzinfo is None:
                raise InvalidContextError(
                    f"{source} gave a naive expires_at datetime; give an aware one "
                    "(for instance with tzinfo=timezone.utc)"
                )
            expires_in = expires_at.timestamp() - now
        elif isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
            expires_in = float(expires_at) - now
        else:
            raise InvalidContextError(
                f"{source} gave an expires_at of type {_type_name(expires_at)}; "
                "give an aware datetime or a POSIX timestamp"
            )
    if expires_in is None:
        return None, None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise InvalidContextError(
            f"{source} gave an expires_in of type {_type_name(expires_in)}; "
            "give seconds as a number"
        )
    if not math.isfinite(expires_in) or expires_in <= 0:
        raise InvalidContextError(
            f"{source} gave a context that is already expired or has no valid lifetime "
            f"(expires in {expires_in!r} s); return a fresh context with a positive lifetime"
        )
    return float(expires_in), now + expires_in
