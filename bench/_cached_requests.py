"""The cached path on requests: one section of ``bench_cached_path.py``, in a process of its own.

requests has no mock transport of its own; a transport adapter mounted for the origin, which
answers every request with a canned 200 without any I/O, stands in for one (everything else a
``Session`` does per request, proxies from the environment and the response hooks included,
still runs).
"""

from __future__ import annotations

import sys
import time
from argparse import Namespace
from typing import Any

import requests
from _cached_common import (
    ALONE,
    HEADER,
    LOOPBACK,
    MINIMAL,
    MOCK,
    ORIGIN,
    OURS,
    STATIC,
    TOKEN,
    URL,
    Clocks,
    interleave,
    pipeline_for,
    section_main,
    size,
    sized,
    summarise,
    timed,
    versions,
)
from requests.adapters import BaseAdapter
from requests.auth import AuthBase
from requests.hooks import dispatch_hook
from requests.structures import CaseInsensitiveDict

from asapp_auth.requests import RequestsAuth

AUTHLIB = "authlib OAuth2Session"
HOOKED = "minimal auth with a response hook"
# What Session.send hands every response hook.
HOOK_KWARGS: dict[str, Any] = {
    "stream": False,
    "timeout": None,
    "verify": True,
    "cert": None,
    "proxies": {},
}


class OneHeader(AuthBase):
    """The minimal hand-written auth: it sets one header."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {TOKEN}"
        return request


def passed(response: requests.Response, **kwargs: Any) -> requests.Response:
    return response


class OneHeaderAndHook(AuthBase):
    """The minimal auth that can see its answers: one header, and a response hook that returns
    the response (a requests auth's only way to see a 401 or a redirect)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {TOKEN}"
        request.register_hook("response", passed)  # type: ignore[no-untyped-call]
        return request


def canned(request: requests.PreparedRequest, adapter: BaseAdapter | None) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.reason = "OK"
    response.headers = CaseInsensitiveDict(
        {"Content-Type": "application/json", "Content-Length": "2"}
    )
    response._content = b"{}"
    response.url = request.url or ""
    response.request = request
    response.connection = adapter
    return response


class Canned(BaseAdapter):
    """A transport adapter answering a canned 200, with no I/O."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        return canned(request, self)

    def close(self) -> None:
        pass


def sessions(origin: str, mock: bool) -> dict[str, requests.Session]:
    variants = {name: requests.Session() for name in (STATIC, MINIMAL, HOOKED, OURS)}
    variants[STATIC].headers[HEADER[0]] = HEADER[1]
    variants[MINIMAL].auth = OneHeader()
    variants[HOOKED].auth = OneHeaderAndHook()
    variants[OURS].auth = RequestsAuth(pipeline_for(origin))
    try:
        from authlib.integrations.requests_client import OAuth2Session
    except ImportError:
        pass
    else:
        token = {"access_token": TOKEN, "token_type": "Bearer", "expires_at": time.time() + 3600}
        variants[AUTHLIB] = OAuth2Session("id", "x", token=token)
    if mock:
        for session in variants.values():
            session.mount(origin, Canned())
    return variants


def alone(rounds: int, n: int) -> dict[str, Any]:
    """Each auth applied as requests applies it (``prepare_auth``), then its response hooks
    run as ``Session.send`` runs them, on prebuilt requests and canned responses: no I/O."""
    auths: dict[str, AuthBase | None] = {
        STATIC: None,
        MINIMAL: OneHeader(),
        HOOKED: OneHeaderAndHook(),
        OURS: RequestsAuth(pipeline_for(ORIGIN)),
    }
    session = requests.Session()

    def run(name: str, count: int) -> Clocks:
        auth = auths[name]
        prepared = [session.prepare_request(requests.Request("GET", URL)) for _ in range(count)]
        responses = [canned(request, None) for request in prepared]

        def body() -> None:
            for request, response in zip(prepared, responses, strict=True):
                if auth is None:
                    request.headers["Authorization"] = f"Bearer {TOKEN}"
                else:
                    request.prepare_auth(auth)
                dispatch_hook("response", request.hooks, response, **HOOK_KWARGS)

        return timed(body)

    return summarise(interleave(list(auths), run, rounds, n), ALONE, rounds, n)


def whole(
    origin: str, url: str, *, mock: bool, setting: str, rounds: int, n: int
) -> dict[str, Any]:
    variants = sessions(origin, mock)
    for session in variants.values():
        session.get(url).raise_for_status()

    def run(name: str, count: int) -> Clocks:
        session = variants[name]

        def body() -> None:
            for _ in range(count):
                session.get(url)

        return timed(body)

    try:
        return summarise(interleave(list(variants), run, rounds, n), setting, rounds, n)
    finally:
        for session in variants.values():
            session.close()


def measure(args: Namespace) -> dict[str, Any]:
    from asapp_auth.testing import FakePlatform

    settings = {
        ALONE: alone(*size(ALONE, args.quick)),
        MOCK: whole(ORIGIN, URL, mock=True, setting=MOCK, **sized(MOCK, args.quick)),
    }
    with FakePlatform() as platform:
        url = f"{platform.url}/public"
        settings[LOOPBACK] = whole(
            platform.origin, url, mock=False, setting=LOOPBACK, **sized(LOOPBACK, args.quick)
        )
    adapter = {
        "settings": settings,
        "mock": "a mounted transport adapter answering a canned 200",
        "versions": versions("requests", "urllib3"),
    }
    return {"requests": adapter}


if __name__ == "__main__":
    sys.exit(section_main(__doc__, measure, sys.argv[1:]))
