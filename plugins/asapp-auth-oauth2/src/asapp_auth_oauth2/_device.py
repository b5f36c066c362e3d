"""The device authorization grant (RFC 8628), for apps without a browser: the customer is shown
where to go and which code to enter, and the plugin polls the token endpoint until they have."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._transport import HTTPResult, describe_endpoint
from .errors import LoginDeniedError, LoginError, LoginTimeoutError, OAuth2Error

__all__ = ["DEVICE_GRANT", "DeviceCode", "parse_device_code", "poll", "print_device_code"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_DEFAULT_INTERVAL = 5.0  # RFC 8628 section 3.2
_MIN_INTERVAL = 1.0
_MAX_INTERVAL = 60.0
_SLOW_DOWN = 5.0  # section 3.5: added to the interval for this and every later request


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """What to show the customer: open ``verification_uri`` and enter ``user_code`` (or open
    ``verification_uri_complete``, which holds the code), within ``expires_in`` seconds."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float
    device_code: str = field(repr=False)


def parse_device_code(data: Mapping[str, Any], endpoint: str) -> DeviceCode:
    """Check a device authorization response (section 3.2); else a ``LoginError``."""

    def fail(problem: str) -> LoginError:
        return LoginError(
            f"plugin 'oauth2': the device authorization endpoint {endpoint} answered a response "
            f"whose {problem}; check the endpoint (device_authorization_endpoint)",
            endpoint=endpoint,
            error="invalid_device_response",
        )

    texts: dict[str, str] = {}
    for name in ("device_code", "user_code", "verification_uri"):
        value = data.get(name)
        if not isinstance(value, str) or not value or len(value) > 2048:
            raise fail(f"{name} is missing or not a string")
        texts[name] = value
    if len(texts["user_code"]) > 64 or not texts["user_code"].isprintable():
        raise fail("user_code is not a short, printable code")
    complete = data.get("verification_uri_complete")
    if complete is not None and (not isinstance(complete, str) or len(complete) > 2048):
        raise fail("verification_uri_complete is not a string")
    for uri in (texts["verification_uri"], complete):
        if uri is not None and not uri.startswith(("https://", "http://")):
            raise fail("verification URI is not an http(s) address")
    expires_in = data.get("expires_in")
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or expires_in <= 0
    ):
        raise fail("expires_in is missing or not a positive number of seconds")
    interval = data.get("interval", _DEFAULT_INTERVAL)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        raise fail("interval is not a number of seconds")
    return DeviceCode(
        user_code=texts["user_code"],
        verification_uri=texts["verification_uri"],
        verification_uri_complete=complete,
        expires_in=float(expires_in),
        # A server asking for no wait at all would be polled in a busy loop.
        interval=min(max(float(interval), _MIN_INTERVAL), _MAX_INTERVAL),
        device_code=texts["device_code"],
    )


def print_device_code(code: DeviceCode) -> None:
    """The default ``show_device_code``: tell the customer on standard error."""
    where = code.verification_uri_complete or code.verification_uri
    print(
        f"To log in, open {where} and enter the code {code.user_code} "
        f"(within {code.expires_in / 60:.0f} min).",
        file=sys.stderr,
        flush=True,
    )


def poll(
    request: Callable[[], HTTPResult],
    code: DeviceCode,
    *,
    token_endpoint: str,
    deadline: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float] = time.monotonic,
) -> HTTPResult:
    """Poll the token endpoint with ``request()`` until it answers a token (returned), refuses,
    or the device code or ``deadline`` (``clock`` time) runs out.

    The first poll goes at once (the customer may have finished while the code was shown), then
    one every ``interval`` seconds, five more after each ``slow_down``.
    """
    shown = describe_endpoint(token_endpoint)
    end = min(deadline, clock() + code.expires_in)
    interval = code.interval
    while True:
        try:
            return request()
        except OAuth2Error as exc:
            if exc.error == "authorization_pending":
                pass
            elif exc.error == "slow_down":
                interval = min(interval + _SLOW_DOWN, _MAX_INTERVAL)
            elif exc.error == "access_denied":
                raise LoginDeniedError(
                    f"plugin 'oauth2': the device login was refused (access_denied at {shown}); "
                    "the customer was not logged in",
                    endpoint=shown,
                    error="access_denied",
                    error_description=exc.error_description,
                ) from None
            elif exc.error == "expired_token":
                raise LoginTimeoutError(
                    f"plugin 'oauth2': the device code expired before the customer logged in "
                    f"(expired_token at {shown}); the next request that needs a login starts "
                    "another",
                    endpoint=shown,
                    error="expired_token",
                ) from None
            else:
                raise
        if clock() + interval >= end:
            raise LoginTimeoutError(
                "plugin 'oauth2': the customer did not enter the device login's code in time "
                f"(the device code's expires_in, login_timeout and the pipeline's); polled "
                f"{shown} until then",
                endpoint=shown,
                error="login_timeout",
            )
        sleep(interval)
