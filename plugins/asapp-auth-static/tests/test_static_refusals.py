"""Every bad configuration is refused when the plugin is configured, with a clear message."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asapp_auth_static import from_settings

from asapp_auth.errors import ConfigurationError

TOKEN = "tok_static-refusal-test-token-value"


def _jwt(payload: Any) -> str:
    def seg(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'none'})}.{seg(payload)}.sig"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "exactly one of .* \\(given: none\\)"),
        ({"token": TOKEN, "token_env": "X"}, "exactly one of"),
        ({"token": TOKEN, "tokens": 1}, "unknown setting 'tokens' \\(did you mean 'token'\\?\\)"),
        ({"token": ""}, "'token' must be a non-empty str"),
        ({"token": "   "}, "is empty"),
        ({"token": 5}, "'token' must be a non-empty str"),
        ({"token": "env:ASAPP_TEST_MISSING"}, "'ASAPP_TEST_MISSING', which is not set"),
        ({"token_env": "ASAPP_TEST_MISSING"}, "'ASAPP_TEST_MISSING', which is not set"),
        ({"token_file": "/nonexistent/token"}, "'/nonexistent/token' cannot be read"),
        ({"token": "file:/nonexistent/token"}, "'/nonexistent/token' cannot be read"),
        ({"token": TOKEN, "lifetime": 0}, "'lifetime' must be a positive number"),
        ({"token": TOKEN, "lifetime": "60"}, "'lifetime' must be a positive number"),
        ({"token": TOKEN, "lifetime": 5, "expiry_from_jwt": True}, "not both"),
        ({"token": TOKEN, "expiry_from_jwt": "yes"}, "must be true or false"),
        ({"token": TOKEN, "expiry_from_jwt": True}, "not a JWT with a numeric exp"),
        ({"token": _jwt({"sub": "x"}), "expiry_from_jwt": True}, "not a JWT with a numeric exp"),
        ({"token": _jwt({"exp": time.time() - 1}), "expiry_from_jwt": True}, "expired at exp="),
        ({"token": TOKEN, "template": "{token}"}, "'template' must be a non-empty mapping"),
        ({"token": TOKEN, "template": {}}, "'template' must be a non-empty mapping"),
        ({"token": TOKEN, "template": {"Auth": {"Token": "x"}}}, "never uses the token"),
        ({"token": TOKEN, "template": {"Auth": {"Token": "{token}", "Body": {1, 2}}}},
         "only JSON values"),
        ({"token": TOKEN, "template": {"Auth": {"Headers": {"X": "{token}", "Y": 5}}}},
         "'template' and the token of setting 'token' is invalid"),
        ({"token": "two\nlines", "template": {"Auth": {"Token": "{token}x\n"}}},
         "is invalid: .*Auth.Token"),
        ({"token": TOKEN, "customers": "alice"}, "'customers' must be a list"),
        ({"token": TOKEN, "customers": []}, "'customers' must be a non-empty list"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    """Each bad setting raises ConfigurationError naming the plugin and what to fix."""
    with pytest.raises(ConfigurationError, match=message) as info:
        from_settings(settings)
    assert str(info.value).startswith("plugin 'static': ")
    assert TOKEN not in str(info.value)


def test_empty_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    """An empty or directory token_file is refused at configuration time, naming the file."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigurationError, match=r"'token_file': file .*empty' is empty"):
        from_settings({"token_file": str(empty)})
    with pytest.raises(ConfigurationError, match="cannot be read"):
        from_settings({"token_file": str(tmp_path)})


def test_empty_env_var_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment variable that is set but empty is refused, naming the variable."""
    monkeypatch.setenv("ASAPP_TEST_EMPTY", "")
    with pytest.raises(ConfigurationError, match="'ASAPP_TEST_EMPTY', which is empty"):
        from_settings({"token_env": "ASAPP_TEST_EMPTY"})


def test_invalid_token_in_a_header_is_refused(new_token: Callable[[], str]) -> None:
    """A token that cannot go in a header is refused at configuration time, and not quoted."""
    token = new_token() + "\r\nX-Evil: 1"
    with pytest.raises(ConfigurationError, match="not allowed in a header") as info:
        from_settings({"token": token})
    assert token not in str(info.value)


def test_every_problem_is_reported_at_once_in_the_order_given() -> None:
    """Several bad settings are all reported by one error, in the order they were given, with
    the problem of no token at all after them."""
    settings = {"customers": "alice", "tokn": TOKEN, "lifetime": 0, "template": {}}
    with pytest.raises(ConfigurationError) as info:
        from_settings(settings)
    problems = info.value.problems
    assert [problem.split(" (")[0].split(" must")[0] for problem in problems] == [
        "setting 'customers'",
        "unknown setting 'tokn'",
        "setting 'lifetime'",
        "setting 'template'",
        "give exactly one of the settings 'token', 'token_env' and 'token_file'",
    ]
    assert "did you mean 'token'?" in problems[1]
    assert str(info.value).startswith("plugin 'static': 5 problems:\n  - setting 'customers'")
    assert TOKEN not in str(info.value)
