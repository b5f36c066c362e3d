"""The settings of the plugin's own login (``login = "loopback"`` or ``"device"``), validated when
the plugin is configured."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._id_token import ALGORITHMS
from ._setting_checks import (
    callable_setting,
    check_url,
    fail,
    int_setting,
    number_setting,
    str_setting,
)

__all__ = ["LOGIN_METHODS", "LOGIN_SETTINGS", "LoginSettings", "parse_login"]

LOGIN_METHODS = ("loopback", "device")
"""The names the ``login`` setting accepts: a browser with a loopback redirect, or a device code."""
LOGIN_SETTINGS = frozenset(
    {
        "login",
        "authorization_endpoint",
        "device_authorization_endpoint",
        "jwks_uri",
        "open_browser",
        "show_device_code",
        "redirect_port",
        "redirect_path",
        "login_timeout",
        "customer_claim",
        "customer_id_for",
        "id_token_algorithms",
        "id_token_leeway",
        "id_token_max_age",
    }
)


@dataclass(frozen=True, slots=True)
class LoginSettings:
    """How the plugin logs a customer in when the pipeline asks (``on_login_required``)."""

    method: str
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    jwks_uri: str | None = None
    open_browser: Callable[[str], object] | None = field(default=None, repr=False)
    show_device_code: Callable[[Any], object] | None = field(default=None, repr=False)
    redirect_port: int = 0
    redirect_path: str = "/callback"
    timeout: float = 300.0
    openid: bool = False
    customer_claim: str = "sub"
    customer_id_for: Callable[[Mapping[str, Any]], str] | None = field(default=None, repr=False)
    id_token_algorithms: tuple[str, ...] = ALGORITHMS
    id_token_leeway: float = 60.0
    id_token_max_age: float = 600.0


def parse_login(
    raw: Mapping[str, Any],
    *,
    grant: str,
    scope: tuple[str, ...],
    issuer: str | None,
    allow_http: bool,
) -> LoginSettings | None:
    """The login settings of ``raw``, or ``None`` without ``login``; ``ConfigurationError``
    naming the first bad one."""
    method = raw.get("login")
    if method is None:
        stray = sorted(name for name in LOGIN_SETTINGS if raw.get(name) is not None)
        if stray:
            raise fail(stray[0], "is a login setting; set 'login' to 'loopback' or 'device'")
        return None
    if method not in LOGIN_METHODS:
        raise fail("login", f"must be one of {list(LOGIN_METHODS)}, got {method!r}")
    if grant != "refresh_token":
        raise fail(
            "grant",
            f"must be 'refresh_token' with login={method!r} (the login's refresh token renews "
            f"the customer's access token), not {grant!r}",
        )

    def url(name: str) -> str | None:
        value = raw.get(name)
        return None if value is None else check_url(name, value, allow_http=allow_http)

    endpoint = "authorization_endpoint" if method == "loopback" else "device_authorization_endpoint"
    if raw.get(endpoint) is None and issuer is None:
        raise fail(endpoint, f"(or 'issuer', to discover it) is required with login={method!r}")
    openid = "openid" in scope
    customer_id_for = callable_setting("customer_id_for", raw.get("customer_id_for"))
    if openid and issuer is None:
        raise fail(
            "issuer",
            "is required with 'openid' in scope: the ID token's iss must be checked against it",
        )
    if not openid and customer_id_for is None:
        raise fail(
            "customer_id_for",
            "is required with login and no 'openid' in scope: without an ID token the plugin "
            "cannot tell who logged in (or add 'openid' to scope)",
        )
    path = str_setting("redirect_path", raw.get("redirect_path", "/callback"))
    if path is None or not path.startswith("/") or "?" in path or "#" in path:
        raise fail("redirect_path", f"must be a path starting with '/', got {path!r}")
    port = int_setting("redirect_port", raw.get("redirect_port", 0), minimum=0)
    if port > 65535:
        raise fail("redirect_port", f"must be a TCP port (0 for any free one), got {port}")
    algorithms = raw.get("id_token_algorithms", ALGORITHMS)
    if isinstance(algorithms, str):
        algorithms = [algorithms]
    if not isinstance(algorithms, list | tuple) or not algorithms:
        raise fail("id_token_algorithms", "must be a non-empty list of JWS algorithm names")
    for alg in algorithms:
        if alg not in ALGORITHMS:
            why = (
                "unsigned ID tokens are never accepted"
                if isinstance(alg, str) and alg.lower() == "none"
                else f"supported: {list(ALGORITHMS)}"
            )
            raise fail("id_token_algorithms", f"holds {alg!r}; {why}")
    claim = str_setting("customer_claim", raw.get("customer_claim", "sub"))
    assert claim is not None
    return LoginSettings(
        method=method,
        authorization_endpoint=url("authorization_endpoint"),
        device_authorization_endpoint=url("device_authorization_endpoint"),
        jwks_uri=url("jwks_uri"),
        open_browser=callable_setting("open_browser", raw.get("open_browser")),
        show_device_code=callable_setting("show_device_code", raw.get("show_device_code")),
        redirect_port=port,
        redirect_path=path,
        timeout=number_setting("login_timeout", raw.get("login_timeout", 300.0), minimum=0),
        openid=openid,
        customer_claim=claim,
        customer_id_for=customer_id_for,
        id_token_algorithms=tuple(dict.fromkeys(algorithms)),
        id_token_leeway=number_setting(
            "id_token_leeway", raw.get("id_token_leeway", 60.0), minimum=0, allow_zero=True
        ),
        id_token_max_age=number_setting(
            "id_token_max_age", raw.get("id_token_max_age", 600.0), minimum=0
        ),
    )
