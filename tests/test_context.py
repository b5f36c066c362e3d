"""AuthContext: validation on the way in, immutability, expiry and redaction."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from asapp_auth import AuthContext
from asapp_auth.errors import InvalidContextError

FULL = {
    "Auth": {
        "Token": "tok-s3cr3t",
        "Headers": {"X-Session": "hdr-s3cr3t"},
        "Cookies": {"sid": "cookie-s3cr3t"},
        "Body": {"session": "body-s3cr3t", "n": [1, 2]},
        "Scopes": ["read", "write"],
    },
    "CustomerInfo": {"tier": "gold-s3cr3t"},
    "ExternalSessionId": "ext-s3cr3t",
    "ExternalSessionType": "web",
    "CompanySubdivision": "retail",
    "Segments": ["vip"],
    "Unknown": {"kept": True},
}


def test_full_schema_is_accepted_and_unknown_keys_kept() -> None:
    """Every key of the platform's schema is accepted, and unknown keys are kept as given."""
    context = AuthContext(FULL)
    assert context.token == "tok-s3cr3t"
    assert context["Auth"]["Scopes"] == ("read", "write")
    assert context["Unknown"]["kept"] is True
    assert context.to_dict() == FULL


def test_context_is_deeply_immutable() -> None:
    """Neither the context nor its nested mappings and lists can be changed."""
    source = {"Auth": {"Token": "t-s3cr3t", "Headers": {"A": "b"}}}
    context = AuthContext(source)
    source["Auth"]["Token"] = "changed"
    assert context.token == "t-s3cr3t"
    with pytest.raises(TypeError):
        context["Auth"]["Headers"]["A"] = "c"  # type: ignore[index]
    with pytest.raises(TypeError):
        context["x"] = 1  # type: ignore[index]


def test_repr_and_str_redact_every_secret() -> None:
    """repr and str show the shape and the non-secret keys, never a secret value."""
    context = AuthContext(FULL, expires_in=60)
    for text in (repr(context), str(context)):
        assert "s3cr3t" not in text
        assert "'Scopes': ['read', 'write']" in text
        assert "'Segments': ['vip']" in text
        assert "<redacted>" in text


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"Auth": {"Token": 12}}, "Auth.Token"),
        ({"Auth": {"Token": ""}}, "Auth.Token"),
        ({"Auth": {"Token": "a\r\nInjected: 1"}}, "Auth.Token"),
        ({"Auth": "tok"}, "Auth"),
        ({"Auth": {"Headers": {"X-A": 1}}}, "Auth.Headers"),
        ({"Auth": {"Headers": {"Bad Name": "v"}}}, "Auth.Headers"),
        ({"Auth": {"Headers": {"X-A": "v\nX-B: w"}}}, "Auth.Headers"),
        ({"Auth": {"Cookies": {"sid": "a;b"}}}, "Auth.Cookies"),
        ({"Auth": {"Cookies": ["sid"]}}, "Auth.Cookies"),
        ({"Auth": {"Body": ["not", "an", "object"]}}, "Auth.Body"),
        ({"Auth": {"Body": {"when": object()}}}, "Auth.Body"),
        ({"Auth": {"Scopes": "read"}}, "Auth.Scopes"),
        ({"Auth": {"Scopes": ["read", 1]}}, "Auth.Scopes"),
        ({"CustomerInfo": {"tier": 3}}, "CustomerInfo"),
        ({"ExternalSessionId": 5}, "ExternalSessionId"),
        ({"Segments": "vip"}, "Segments"),
        ({1: "x"}, "top level"),
    ],
)
def test_wrong_types_raise_naming_the_key_and_source(data: dict, where: str) -> None:
    """A wrong type raises InvalidContextError naming the key and who returned it."""
    with pytest.raises(InvalidContextError) as caught:
        AuthContext(data, source="plugin 'demo'")
    message = str(caught.value)
    assert where in message
    assert "plugin 'demo'" in message


@pytest.mark.parametrize("data", [None, "tok", ["Auth"], {}])
def test_non_mappings_and_empty_context_are_refused(data: object) -> None:
    """A non-mapping or an empty mapping is refused with advice to return None to pass."""
    with pytest.raises(InvalidContextError, match="None"):
        AuthContext(data)  # type: ignore[arg-type]


def test_error_messages_never_quote_values() -> None:
    """A validation error describes a bad value by type, never by quoting it."""
    with pytest.raises(InvalidContextError) as caught:
        AuthContext({"Auth": {"Token": "ok", "Headers": {"X-A": "s3cr3t\n"}}})
    assert "s3cr3t" not in str(caught.value)


def test_expiry_from_expires_in_and_expires_at() -> None:
    """expires_in and expires_at (datetime or timestamp) give the same lifetime."""
    now = datetime.now(UTC)
    by_in = AuthContext({"Auth": {"Token": "t"}}, expires_in=120)
    by_at = AuthContext({"Auth": {"Token": "t"}}, expires_at=now + timedelta(seconds=120))
    by_ts = AuthContext({"Auth": {"Token": "t"}}, expires_at=now.timestamp() + 120)
    for context in (by_in, by_at, by_ts):
        assert context.expires_in is not None
        assert math.isclose(context.expires_in, 120, abs_tol=1)
        assert context.expires_at is not None
        assert abs((context.expires_at - now).total_seconds() - 120) < 1
    assert AuthContext({"Auth": {"Token": "t"}}).expires_in is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expires_in": -5},
        {"expires_in": 0},
        {"expires_in": math.inf},
        {"expires_in": math.nan},
        {"expires_in": True},
        {"expires_in": "60"},
        {"expires_at": datetime.now(UTC) - timedelta(seconds=1)},
        {"expires_at": datetime.now()},  # naive
        {"expires_at": "tomorrow"},
        {"expires_in": 5, "expires_at": 10**10},
    ],
)
def test_bad_expiry_is_refused(kwargs: dict) -> None:
    """A negative, zero, infinite, past, naive, mistyped or doubled expiry is refused."""
    with pytest.raises(InvalidContextError):
        AuthContext({"Auth": {"Token": "t"}}, **kwargs)


def test_with_expiry_keeps_the_data() -> None:
    """with_expiry returns an equal context with the new expiry."""
    context = AuthContext({"Auth": {"Token": "t"}})
    later = context.with_expiry(expires_in=30)
    assert later == context
    assert later.expires_in == 30
