"""AuthContext: validation on the way in, immutability, expiry and redaction."""

from __future__ import annotations

import ipaddress
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


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"Auth": {"Token": None}}, "Auth.Token is None"),
        ({"Auth": {"Token": None, "Headers": {"X-Key": "k"}}}, "Auth.Token is None"),
        ({"Auth": None}, "Auth is None"),
        ({"Auth": {"Headers": None}}, "Auth.Headers is None"),
    ],
)
def test_none_where_the_schema_wants_a_value_is_refused(data: dict, problem: str) -> None:
    """A None token (or Auth, or Headers) attaches nothing, so it is refused, named as None."""
    with pytest.raises(InvalidContextError) as caught:
        AuthContext(data, source="plugin 'demo'")
    assert problem in str(caught.value)
    assert "plugin 'demo'" in str(caught.value)


def test_an_empty_token_is_said_to_be_empty() -> None:
    """An empty Auth.Token is refused as empty, not as a str of the wrong kind."""
    with pytest.raises(InvalidContextError) as caught:
        AuthContext({"Auth": {"Token": ""}})
    message = str(caught.value)
    assert "Auth.Token is empty" in message
    assert "is a str" not in message


@pytest.mark.parametrize(
    ("data", "given", "expected"),
    [
        ({"auth": {"token": "x"}}, "'auth'", "'Auth'"),
        ({"AUTH": {"Token": "x"}}, "'AUTH'", "'Auth'"),
        ({"Auth": {"token": "x"}}, "Auth.'token'", "Auth.'Token'"),
        ({"Auth": {"Token": "x", "headers": {"A": "b"}}}, "Auth.'headers'", "Auth.'Headers'"),
        ({"Auth": {"Token": "x"}, "customerInfo": {"a": "b"}}, "'customerInfo'", "'CustomerInfo'"),
        ({"Auth": {"Token": "x"}, "segments": ["vip"]}, "'segments'", "'Segments'"),
    ],
)
def test_schema_keys_in_another_case_are_refused_with_the_right_spelling(
    data: dict, given: str, expected: str
) -> None:
    """A key that differs from the schema's only in case is refused, naming both spellings."""
    with pytest.raises(InvalidContextError) as caught:
        AuthContext(data, source="plugin 'demo'")
    message = str(caught.value)
    assert f"key {given}" in message
    assert f"spells {expected}" in message
    assert "plugin 'demo'" in message


def test_repr_shows_none_as_none() -> None:
    """repr shows a None value as None: there is no secret in it to redact."""
    context = AuthContext({"Auth": {"Token": "t-s3cr3t", "Body": {"session": None}}, "Extra": None})
    text = repr(context)
    assert "'Token': '<redacted>'" in text
    assert "'session': None" in text
    assert "'Extra': None" in text


def test_types_are_named_with_their_article() -> None:
    """A wrong type reads as "is an int", not "is a int"."""
    with pytest.raises(InvalidContextError, match=r"Auth\.Token is an int; it must be a str"):
        AuthContext({"Auth": {"Token": 12}})
    with pytest.raises(InvalidContextError, match=r"Auth\.Token is bytes; it must be a str"):
        AuthContext({"Auth": {"Token": b"t-s3cr3t"}})
    with pytest.raises(InvalidContextError, match=r"Auth is an IPv4Address, not a mapping"):
        AuthContext({"Auth": ipaddress.IPv4Address("127.0.0.1")})
