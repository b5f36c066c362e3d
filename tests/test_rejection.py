"""``on_rejection``: the platform's final 401 raised as an asapp-auth error (the default) or
returned as the response, with httpx sync and async against the fake platform."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from asapp_auth import AuthPipeline, hookimpl
from asapp_auth._any_client import KINDS, open_client
from asapp_auth.errors import (
    AsappAuthError,
    ConfigurationError,
    LoginRequiredError,
    ProviderError,
    TokenRejectedError,
)
from asapp_auth.testing import Exchange, FakePlatform


class Refused:
    """A provider whose every token the platform refuses (each has expired as it is made)."""

    def __init__(self, platform: FakePlatform) -> None:
        self.platform = platform
        self.calls: list[bool] = []

    def __call__(self, needs_refresh: bool) -> dict[str, Any]:
        self.calls.append(needs_refresh)
        return {"Auth": {"Token": self.platform.issue_token("alice", lifetime=0)}}


def _get(pipeline: AuthPipeline | Any, url: str, mode: str) -> httpx.Response:
    """GET ``url`` with ``pipeline`` as auth, on a sync or an async httpx client."""
    if mode == "sync":
        with httpx.Client(auth=pipeline) as client:
            return client.get(url)

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(auth=pipeline) as client:
            return await client.get(url)

    return asyncio.run(get())


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_a_context_refused_after_its_refresh_returns_the_401(
    platform: FakePlatform, mode: str
) -> None:
    """With ``on_rejection="return"``, a context refused again right after its refresh gives
    back the platform's 401, on which ``raise_for_status()`` raises httpx's own error."""
    provider = Refused(platform)
    pipeline = AuthPipeline([platform.origin], on_rejection="return")
    pipeline.load("alice", provider)
    response = _get(pipeline, f"{platform.url}/v1/account", mode)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token"}
    assert provider.calls == [False, True]  # refreshed once, as in the default mode
    assert len(platform.requests_to("/v1/account")) == 2
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    assert caught.value.response is response


@pytest.mark.parametrize("mode", MODES)
def test_by_default_the_refused_context_raises(platform: FakePlatform, mode: str) -> None:
    """The default stays ``"raise"``: the same refusal raises ``TokenRejectedError``, which is no
    ``httpx.HTTPError``."""
    pipeline = AuthPipeline([platform.origin])
    pipeline.load("alice", Refused(platform))
    with pytest.raises(TokenRejectedError) as caught:
        _get(pipeline, f"{platform.url}/v1/account", mode)
    assert caught.value.status_code == 401
    assert not isinstance(caught.value, httpx.HTTPError)


@pytest.mark.parametrize("mode", MODES)
def test_a_login_that_does_not_happen_returns_the_401(platform: FakePlatform, mode: str) -> None:
    """An anonymous request answered "login required", with no handler to log in, gives back
    that 401 with ``"return"``, and raises ``LoginRequiredError`` by default."""
    url = f"{platform.url}/v1/account"
    returned = _get(AuthPipeline([platform.origin], on_rejection="return"), url, mode)
    assert returned.status_code == 401
    assert returned.json() == {"error": "login_required"}
    with pytest.raises(LoginRequiredError):
        _get(AuthPipeline([platform.origin]), url, mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_login_that_does_not_help_returns_the_401(platform: FakePlatform, mode: str) -> None:
    """A login that sets a customer whose token is refused too ends on the platform's 401."""
    pipeline = AuthPipeline([platform.origin], on_rejection="return")
    provider = Refused(platform)

    class Login:
        @hookimpl
        def on_login_required(self, pipeline: AuthPipeline) -> bool:
            pipeline.set_customer("alice", provider)
            return True

    pipeline.register(Login())
    response = _get(pipeline, f"{platform.url}/v1/account", mode)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token"}
    assert provider.calls == [False, True]


@pytest.mark.parametrize("mode", MODES)
def test_for_customer_returns_the_401_too(platform: FakePlatform, mode: str) -> None:
    """A fixed customer's refused context (``for_customer``) gives back the 401 as well."""
    pipeline = AuthPipeline([platform.origin], on_rejection="return")
    auth = pipeline.for_customer("alice", Refused(platform))
    assert _get(auth, f"{platform.url}/v1/account", mode).status_code == 401


@pytest.mark.parametrize("mode", MODES)
def test_provider_failures_still_raise(platform: FakePlatform, mode: str) -> None:
    """What is not the platform's answer raises under ``"return"`` too: a provider failing at the
    refresh, or a provider saying the session is gone before anything was sent."""
    refused = Refused(platform)

    def fails_on_refresh(needs_refresh: bool) -> dict[str, Any]:
        if needs_refresh:
            raise RuntimeError("the token service is down")
        return refused(needs_refresh)

    def session_gone(needs_refresh: bool) -> dict[str, Any]:
        raise LoginRequiredError("the site session is gone")

    url = f"{platform.url}/v1/account"
    for provider, error in ((fails_on_refresh, ProviderError), (session_gone, LoginRequiredError)):
        pipeline = AuthPipeline([platform.origin], on_rejection="return")
        pipeline.load("alice", provider)
        with pytest.raises(error):
            _get(pipeline, url, mode)


def test_a_bad_on_rejection_is_a_configuration_error(platform: FakePlatform) -> None:
    """Only ``"raise"`` and ``"return"`` are accepted, and the error says what each means."""
    with pytest.raises(ConfigurationError) as caught:
        AuthPipeline([platform.origin], on_rejection="ignore")  # type: ignore[arg-type]
    assert isinstance(caught.value, AsappAuthError)
    for said in ("'raise'", "'return'", "not 'ignore'"):
        assert said in str(caught.value)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("on_rejection", ["raise", "return"])
def test_httpx_errors_pass_through_unchanged(mode: str, on_rejection: str) -> None:
    """A request that cannot reach the platform raises httpx's own ``ConnectError``, whether
    the context came from the provider or from the cache: the pipeline wraps none of them."""
    with socket.socket() as held:  # bound, never listening: connections to it are refused
        held.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{held.getsockname()[1]}"
        pipeline = AuthPipeline([origin], on_rejection=on_rejection)  # type: ignore[arg-type]
        pipeline.load("alice", lambda needs_refresh: {"Auth": {"Token": "tok-never-sent"}})
        for _ in range(2):  # first fetched, then cached
            with pytest.raises(httpx.ConnectError):
                _get(pipeline, f"{origin}/v1/account", mode)
    assert pipeline.cached() is not None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_client_gets_the_final_401_back(platform: FakePlatform, kind: str) -> None:
    """``on_rejection="return"`` means the same with every client adapter: after the one
    refresh, the platform's final 401 is that client's response, and nothing raises."""
    pipeline = AuthPipeline([platform.origin], on_rejection="return")
    provider = Refused(platform)
    pipeline.load("alice", provider)
    client = open_client(kind, pipeline)
    try:
        result = client.get(f"{platform.url}/v1/account")
    finally:
        client.close()
    assert result.status == 401
    assert result.json() == {"error": "invalid_token"}
    assert provider.calls == [False, True]
    assert len(platform.requests_to("/v1/account")) == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_431_refused_again_after_its_refresh_is_returned_too(
    platform: FakePlatform, mode: str
) -> None:
    """A 431 (headers too large) that the refresh did not cure comes back as the response with
    ``"return"``, as a 401 does, and raises ``TokenRejectedError`` by default."""

    def too_large(exchange: Exchange) -> None:
        exchange.answer(431, {"error": "request_header_fields_too_large"})

    platform.route("/v1/big", too_large)
    url = f"{platform.url}/v1/big"
    for on_rejection in ("return", "raise"):
        provider = Refused(platform)
        pipeline = AuthPipeline([platform.origin], on_rejection=on_rejection)  # type: ignore[arg-type]
        pipeline.load("alice", provider)
        if on_rejection == "return":
            assert _get(pipeline, url, mode).status_code == 431
        else:
            with pytest.raises(TokenRejectedError) as caught:
                _get(pipeline, url, mode)
            assert caught.value.status_code == 431
        assert provider.calls == [False, True]
