"""``StaticTokenProvider``: token sources, the template, expiry, and the watched token file."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asapp_auth_static import StaticTokenProvider, from_settings, jwt_expiry

from asapp_auth import AuthContext, Customer
from asapp_auth.errors import ProviderError
from asapp_auth.plugins import configure_plugin, discover

ALICE = Customer.create("alice")


def _jwt(exp: float | None, **claims: Any) -> str:
    """An unsigned-looking JWT with the given exp (the plugin never verifies it)."""

    def seg(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    payload = dict(claims) if exp is None else {**claims, "exp": exp}
    return f"{seg({'alg': 'HS256'})}.{seg(payload)}.c2lnbmF0dXJl"


def _context(provider: StaticTokenProvider, needs_refresh: bool = False) -> AuthContext:
    context = provider.provide_context(ALICE, needs_refresh)
    assert isinstance(context, AuthContext)
    return context


def test_literal_token_with_the_default_template(new_token: Callable[[], str]) -> None:
    """A literal token fills Auth.Token, with no expiry."""
    token = new_token()
    context = _context(from_settings({"token": token}))
    assert context.to_dict() == {"Auth": {"Token": token}}
    assert context.expires_at is None


def test_token_from_env_reference_and_token_env(
    new_token: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """token='env:NAME' and token_env='NAME' both read the variable at configuration time."""
    token = new_token()
    monkeypatch.setenv("ASAPP_TEST_TOKEN", token)
    assert _context(from_settings({"token": "env:ASAPP_TEST_TOKEN"})).token == token
    provider = from_settings({"token_env": "ASAPP_TEST_TOKEN"})
    monkeypatch.delenv("ASAPP_TEST_TOKEN")
    assert _context(provider).token == token


def test_token_file_drops_the_trailing_newline(
    new_token: Callable[[], str], tmp_path: Path
) -> None:
    """A token file's surrounding whitespace (a trailing newline) is not part of the token."""
    token = new_token()
    path = tmp_path / "token"
    path.write_text(token + "\n")
    assert _context(from_settings({"token_file": str(path)})).token == token


def test_template_places_the_token_and_fixed_values(new_token: Callable[[], str]) -> None:
    """Every {token} in a string value is replaced; other values are kept as they are."""
    token = new_token()
    template = {
        "Auth": {
            "Headers": {"Authorization": "Bearer {token}", "X-Client": "app"},
            "Scopes": ["chat"],
        },
        "CustomerInfo": {"Tier": "gold", "Raw": "{token}"},
        "ExternalSessionType": "web",
    }
    context = _context(from_settings({"token": token, "template": template}))
    assert context.to_dict() == {
        "Auth": {
            "Headers": {"Authorization": f"Bearer {token}", "X-Client": "app"},
            "Scopes": ["chat"],
        },
        "CustomerInfo": {"Tier": "gold", "Raw": token},
        "ExternalSessionType": "web",
    }
    assert template["CustomerInfo"] == {"Tier": "gold", "Raw": "{token}"}  # not modified


def test_lifetime_sets_the_expiry(new_token: Callable[[], str]) -> None:
    """With lifetime, each context expires that many seconds after it is given."""
    context = _context(from_settings({"token": new_token(), "lifetime": 120}))
    assert context.expires_in == pytest.approx(120)


def test_expiry_read_from_the_jwt(new_token: Callable[[], str]) -> None:
    """With expiry_from_jwt, the context expires at the token's exp, read without verifying."""
    exp = int(time.time()) + 900
    token = _jwt(exp, sub=new_token())
    context = _context(from_settings({"token": token, "expiry_from_jwt": True}))
    assert context.expires_at is not None
    assert context.expires_at.timestamp() == pytest.approx(exp, abs=0.01)


def test_jwt_expiry_reads_exp_or_none() -> None:
    """jwt_expiry returns a numeric exp, and None for anything else."""
    assert jwt_expiry(_jwt(123)) == 123.0
    assert jwt_expiry(_jwt(None)) is None
    assert jwt_expiry(_jwt("soon")) is None  # type: ignore[arg-type]
    assert jwt_expiry(_jwt(True)) is None
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None
    assert jwt_expiry("a.W10.c") is None  # a JSON list, not an object


def test_customers_limits_who_is_served(new_token: Callable[[], str]) -> None:
    """With customers set, any other customer gets None (the next provider is asked)."""
    provider = from_settings({"token": new_token(), "customers": ["alice"]})
    assert provider.provide_context(Customer.create("bob"), needs_refresh=False) is None
    assert provider.provide_context(ALICE, needs_refresh=False) is not None


def test_changed_file_is_picked_up_without_a_refresh(
    new_token: Callable[[], str], tmp_path: Path
) -> None:
    """A token file replaced by the platform (atomic rename) is read on the next call."""
    path = tmp_path / "token"
    first, second = new_token(), new_token()
    path.write_text(first)
    provider = from_settings({"token_file": str(path)})
    assert _context(provider).token == first
    staging = tmp_path / "token.new"
    staging.write_text(second)
    os.replace(staging, path)
    assert _context(provider).token == second


def test_unchanged_file_is_not_read_again(new_token: Callable[[], str], tmp_path: Path) -> None:
    """While inode, size and mtime stay the same the file is not read; a refresh reads it."""
    path = tmp_path / "token"
    first = new_token()
    second = first[:-1] + ("A" if first[-1] != "A" else "B")  # same size
    path.write_text(first)
    before = os.stat(path)
    provider = from_settings({"token_file": str(path)})
    with open(path, "r+") as handle:  # same inode
        handle.write(second)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _context(provider).token == first  # only stat() was called
    assert _context(provider, needs_refresh=True).token == second


def test_refresh_reads_the_file_again(new_token: Callable[[], str], tmp_path: Path) -> None:
    """needs_refresh=True reads the file even when it looks unchanged, and returns its token."""
    path = tmp_path / "token"
    token = new_token()
    path.write_text(token)
    provider = from_settings({"token_file": str(path), "lifetime": 60})
    assert _context(provider, needs_refresh=True).token == token


def test_file_problems_after_configuration_are_provider_errors(
    new_token: Callable[[], str], tmp_path: Path
) -> None:
    """A token file that is emptied or removed later fails the request with ProviderError."""
    path = tmp_path / "token"
    path.write_text(new_token())
    provider = from_settings({"token_file": str(path)})
    path.write_text("")
    with pytest.raises(ProviderError, match="is empty") as info:
        _context(provider)
    assert info.value.plugin == "static"
    path.unlink()
    with pytest.raises(ProviderError, match="is gone"):
        _context(provider)


def test_expired_jwt_in_file_fails_until_rotated(
    new_token: Callable[[], str], tmp_path: Path
) -> None:
    """A file whose JWT has expired fails with ProviderError; once rotated it serves again."""
    path = tmp_path / "token"
    path.write_text(_jwt(time.time() + 600, sub=new_token()))
    provider = from_settings({"token_file": str(path), "expiry_from_jwt": True})
    path.write_text(_jwt(time.time() - 5, sub=new_token()))
    with pytest.raises(ProviderError, match="was not rotated"):
        _context(provider, needs_refresh=True)
    fresh = _jwt(int(time.time()) + 600, sub=new_token())
    path.write_text(fresh)
    assert _context(provider, needs_refresh=True).token == fresh


def test_plugin_is_listed_once_installed_and_configured_by_name(
    new_token: Callable[[], str],
) -> None:
    """The installed distribution is listed under entry point static and configures a provider."""
    info = {i.name: i for i in discover()}["static"]
    assert (info.distribution, info.value, info.error) == (
        "asapp-auth-static", "asapp_auth_static", None)  # fmt: skip
    assert isinstance(configure_plugin(info, {"token": new_token()}), StaticTokenProvider)


def test_repr_holds_no_token(new_token: Callable[[], str], tmp_path: Path) -> None:
    """repr names where the token comes from, never the token."""
    token = new_token()
    assert token not in repr(from_settings({"token": token}))
    path = tmp_path / "token"
    path.write_text(token)
    expected = f"StaticTokenProvider(file={str(path)!r})"
    assert repr(from_settings({"token_file": str(path)})) == expected
