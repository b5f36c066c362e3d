"""What the pipeline promises an ``on_login_required`` handler that does the login itself (as the
OAuth2 plugin's does): its deadline, its errors passed on as they are, and its order against the
clearing of a gone session."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from asapp_auth import AuthContext, AuthPipeline, Customer, hookimpl
from asapp_auth.errors import LoginRequiredError
from asapp_auth.testing import FakePlatform


class RefusedLogin(LoginRequiredError):
    """A handler's own typed account of a failed login."""


def test_login_timeout_is_readable_by_a_handler(platform: FakePlatform) -> None:
    """A handler bounds its own work by the pipeline's login_timeout, which it can read."""
    assert AuthPipeline(origins=[platform.origin], login_timeout=7.5).login_timeout == 7.5


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_login_error_raised_by_the_handler_reaches_every_waiting_request(
    platform: FakePlatform, flavour: str
) -> None:
    """A LoginRequiredError the handler raises is what the waiting requests get, not a wrapper."""
    raised: list[RefusedLogin] = []

    class Refuses:
        @hookimpl
        def on_login_required(self) -> bool:
            error = RefusedLogin("the authorization endpoint refused the login (access_denied)")
            raised.append(error)
            raise error

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.register(Refuses())
    url = f"{platform.url}/v1/account"
    if flavour == "sync":
        with httpx.Client(auth=pipeline) as client, pytest.raises(RefusedLogin) as caught:
            client.get(url)
        errors = [caught.value]
    else:

        async def main() -> list[BaseException]:
            async with httpx.AsyncClient(auth=pipeline) as client:
                results = await asyncio.gather(
                    *(client.get(url) for _ in range(5)), return_exceptions=True
                )
            return [r for r in results if isinstance(r, BaseException)]

        errors = asyncio.run(main())
    # Requests whose 401 came after a failed login start one of their own: each gets the error
    # of the login it waited for, as an exception of its own (same type, message and cause).
    assert len(errors) == (1 if flavour == "sync" else 5)
    assert all(type(error) is RefusedLogin for error in errors)
    assert {str(error) for error in errors} == {str(made) for made in raised}
    assert all(error.__cause__ is None for error in errors)  # not a wrapper
    assert len({id(error) for error in errors}) == len(errors)


def test_under_asyncio_a_gone_session_is_cleared_before_the_login_starts(
    platform: FakePlatform,
) -> None:
    """The clearing of a gone session finishes before the login handler runs, so what the login
    stores for the customer (its new tokens) is not dropped by that clearing."""
    login_started = threading.Event()
    cleared_done = threading.Event()
    seen: list[bool] = []

    def alice(needs_refresh: bool) -> AuthContext:
        if needs_refresh:
            raise LoginRequiredError("gone")
        return AuthContext({"Auth": {"Token": platform.issue_token("alice")}})

    class Plugin:
        def __init__(self, pipeline: AuthPipeline) -> None:
            self.pipeline = pipeline

        @hookimpl
        def on_customer_cleared(self, customer: Customer) -> None:
            # Were the login running beside this, it would start while this waits.
            login_started.wait(2)
            cleared_done.set()

        @hookimpl
        def on_login_required(self) -> bool:
            seen.append(cleared_done.is_set())
            login_started.set()
            self.pipeline.set_customer("alice", tokens)
            return True

    def tokens(needs_refresh: bool) -> dict[str, Any]:
        return {"Auth": {"Token": platform.issue_token("alice")}}

    pipeline = AuthPipeline(origins=[platform.origin])
    pipeline.register(Plugin(pipeline))
    pipeline.load("alice", alice)

    async def main() -> Any:
        async with httpx.AsyncClient(auth=pipeline) as client:
            await client.get(f"{platform.url}/v1/account")
            platform.expire()
            return (await client.get(f"{platform.url}/v1/account")).json()

    assert asyncio.run(main()) == {"customer": "alice"}
    assert seen == [True]
