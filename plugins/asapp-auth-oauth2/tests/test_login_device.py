"""The plugin's own login by device authorization (RFC 8628), against the real authorization
server; the customer's visit to the verification page is played by the test, and the polling
waits go through a recorded sleep on a test clock, so no test sleeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asapp_auth_oauth2 import DeviceCode, LoginDeniedError, LoginError, LoginTimeoutError
from loginserver import DEVICE, LoginServer
from test_login import assert_no_secret, me, pipeline_for

from asapp_auth.errors import LoginRequiredError


class Clock:
    """The plugin's clock and sleep: a sleep moves the clock on and may play the customer."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


def device_plugin(make: Any, server: LoginServer, clock: Clock, **extra: Any) -> Any:
    shown: list[DeviceCode] = []
    settings: dict[str, Any] = {
        "issuer": server.base_url,
        "client_id": "app",
        "login": "device",
        "scope": "openid read",
        "show_device_code": shown.append,
        "_clock": clock,
        "_sleep": clock.sleep,
        **extra,
    }
    plugin = make(**settings)
    plugin.shown = shown
    return plugin


def polls(server: LoginServer) -> int:
    return server.calls[DEVICE]


def test_a_device_login_shows_the_code_and_goes_on_once_it_is_entered(
    make: Any, login_server: LoginServer
) -> None:
    """The code and where to enter it are shown; once entered, the request goes on as the ID
    token's sub with the login's own access token."""
    clock = Clock()
    shown: list[DeviceCode] = []

    def show(code: DeviceCode) -> None:
        shown.append(code)
        login_server.approve(code.user_code)  # the customer is quick

    plugin = device_plugin(make, login_server, clock, show_device_code=show)
    pipeline = pipeline_for(plugin, login_server)
    assert me(pipeline, login_server).json() == {"user": "alice"}
    (code,) = shown
    assert code.verification_uri == f"{login_server.base_url}/device"
    assert code.verification_uri_complete == f"{code.verification_uri}?user_code={code.user_code}"
    assert code.interval == 5
    assert code.expires_in == 600
    assert "device_code" not in repr(code)
    assert code.device_code not in repr(code)
    assert polls(login_server) == 1
    assert clock.sleeps == []
    assert login_server.calls["refresh_token"] == 0
    assert login_server.forms[0]["scope"] == ["openid read"]


def test_polling_waits_the_interval_while_the_authorization_is_pending(
    make: Any, login_server: LoginServer
) -> None:
    """authorization_pending: the plugin polls again after each interval until the code is
    entered."""

    def customer(sleeps: int) -> None:
        if sleeps == 2:
            login_server.approve(plugin.shown[0].user_code)

    clock = Clock(customer)
    plugin = device_plugin(make, login_server, clock)
    assert me(pipeline_for(plugin, login_server), login_server).json() == {"user": "alice"}
    assert clock.sleeps == [5, 5]
    assert polls(login_server) == 3


def test_slow_down_adds_five_seconds_to_every_later_wait(
    make: Any, login_server: LoginServer
) -> None:
    """slow_down: the interval grows by 5 s for that request and every one after it."""
    login_server.slow_down = 2

    def customer(sleeps: int) -> None:
        if sleeps == 3:
            login_server.approve(plugin.shown[0].user_code)

    clock = Clock(customer)
    plugin = device_plugin(make, login_server, clock)
    assert me(pipeline_for(plugin, login_server), login_server).is_success
    assert clock.sleeps == [10, 15, 15]


def test_a_refused_device_login_is_a_login_denied_error(
    make: Any, login_server: LoginServer
) -> None:
    """access_denied while polling fails the waiting request, typed, naming the token endpoint."""

    def refuse(code: DeviceCode) -> None:
        login_server.approve(code.user_code, approved=False)

    plugin = device_plugin(make, login_server, Clock(), show_device_code=refuse)
    pipeline = pipeline_for(plugin, login_server)
    with pytest.raises(LoginDeniedError) as caught:
        me(pipeline, login_server)
    assert caught.value.endpoint == login_server.token_url
    assert pipeline.customer is None
    assert_no_secret(caught.value, login_server)


def test_an_expired_device_code_is_a_login_timeout(make: Any, login_server: LoginServer) -> None:
    """expired_token while polling ends the login with LoginTimeoutError."""

    def code_expires(sleeps: int) -> None:
        for credential in login_server.device_codes.values():
            credential.expires_at = 0

    plugin = device_plugin(make, login_server, Clock(code_expires))
    with pytest.raises(LoginTimeoutError) as caught:
        me(pipeline_for(plugin, login_server), login_server)
    assert caught.value.error == "expired_token"
    assert polls(login_server) == 2


@pytest.mark.parametrize(
    "bounds",
    [(12, 300.0, 120.0, 3), (600, 7.0, 120.0, 2), (600, 300.0, 7.0, 2)],
    ids=["expires_in", "login_timeout", "pipeline login_timeout"],
)
def test_polling_stops_at_the_first_of_expires_in_and_both_timeouts(
    make: Any, login_server: LoginServer, bounds: tuple[int, float, float, int]
) -> None:
    """A code never entered: polling stops before the device code's expires_in, the plugin's
    login_timeout or the pipeline's, whichever comes first."""
    expires_in, plugin_timeout, pipeline_timeout, expected_polls = bounds
    login_server.device_expires_in = expires_in
    clock = Clock()
    plugin = device_plugin(make, login_server, clock, login_timeout=plugin_timeout)
    pipeline = pipeline_for(plugin, login_server, login_timeout=pipeline_timeout)
    with pytest.raises(LoginTimeoutError, match="did not enter the device login's code") as caught:
        me(pipeline, login_server)
    assert caught.value.error == "login_timeout"
    assert polls(login_server) == expected_polls
    assert clock.now - 1000.0 < min(expires_in, plugin_timeout, pipeline_timeout)


def test_by_default_the_code_is_shown_on_standard_error(
    make: Any, login_server: LoginServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without show_device_code the plugin prints where to go and the code, on stderr."""

    def customer(sleeps: int) -> None:
        for credential in login_server.device_codes.values():
            login_server.approve(credential.user_code)

    plugin = device_plugin(make, login_server, Clock(customer), show_device_code=None)
    assert me(pipeline_for(plugin, login_server), login_server).is_success
    (credential,) = login_server.device_codes.values()
    err = capsys.readouterr().err
    assert f"{login_server.base_url}/device?user_code={credential.user_code}" in err
    assert f"enter the code {credential.user_code}" in err


def test_the_device_endpoint_refusing_the_client_names_it(
    make: Any, login_server: LoginServer
) -> None:
    """An error at the device authorization endpoint fails the login, naming that endpoint."""
    plugin = device_plugin(make, login_server, Clock(), client_id="nobody")
    with pytest.raises(LoginError) as caught:
        me(pipeline_for(plugin, login_server), login_server)
    assert caught.value.error == "invalid_client"
    assert caught.value.endpoint == f"{login_server.base_url}/device_authorization"
    assert isinstance(caught.value, LoginRequiredError)


def test_show_device_code_raising_fails_the_login(make: Any, login_server: LoginServer) -> None:
    """A show_device_code that raises ends the login at once with a LoginError, chained."""

    def broken(code: DeviceCode) -> None:
        raise RuntimeError("no terminal")

    plugin = device_plugin(make, login_server, Clock(), show_device_code=broken)
    with pytest.raises(LoginError, match="show_device_code raised RuntimeError") as caught:
        me(pipeline_for(plugin, login_server), login_server)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert polls(login_server) == 0
