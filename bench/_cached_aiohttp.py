"""The cached path on aiohttp: one section of ``bench_cached_path.py``, in a process of its own.

aiohttp has no mock transport. In its place, a last client middleware answers every request with a
canned ``ClientResponse`` instead of calling on to the connector: the session still builds each
request, runs the middleware chain and handles the response (cookies, redirects, reading the
body), but opens no connection. Every variant has that middleware last, so the chains differ only
in the auth.
"""

from __future__ import annotations

import asyncio
import sys
from argparse import Namespace
from typing import Any

import aiohttp
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
    ainterleave,
    atimed,
    pipeline_for,
    section_main,
    size,
    sized,
    summarise,
    versions,
)
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL as YarlURL

from asapp_auth.aiohttp import AiohttpAuth

Middleware = Any


async def one_header(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
    """The minimal hand-written auth: a client middleware that sets one header."""
    request.headers["Authorization"] = f"Bearer {TOKEN}"
    return await handler(request)  # type: ignore[no-any-return]


class _Sent:
    """What a ``ClientResponse`` reads from the writer of a request already sent."""

    output_size = 0


def canned(request: aiohttp.ClientRequest, session: Any) -> aiohttp.ClientResponse:
    """A 200 with a two-byte JSON body already read, as ``ClientResponse.start`` leaves one."""
    response = aiohttp.ClientResponse(
        request.method,
        request.original_url,
        writer=None,
        continue100=None,
        timer=None,  # type: ignore[arg-type]
        request_info=request.request_info,
        traces=[],
        loop=request.loop,
        session=session,
        stream_writer=_Sent,  # type: ignore[arg-type]
    )
    response.status = 200
    response.reason = "OK"
    headers = CIMultiDict({"Content-Type": "application/json", "Content-Length": "2"})
    response._headers = CIMultiDictProxy(headers)
    response._body = b"{}"
    return response


def terminal(holder: list[Any]) -> Middleware:
    """The last middleware: a canned response for the session in ``holder``, no connection."""

    async def answer(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        return canned(request, holder[0])

    return answer


def chains(origin: str) -> dict[str, tuple[Middleware, ...]]:
    return {
        STATIC: (),
        MINIMAL: (one_header,),
        OURS: (AiohttpAuth(pipeline_for(origin)),),
    }


async def alone(rounds: int, n: int) -> dict[str, Any]:
    """Each middleware called as aiohttp calls it, on prebuilt requests, with a handler that
    answers at once: no session, no I/O."""
    loop = asyncio.get_running_loop()
    middlewares: dict[str, Middleware | None] = {
        STATIC: None,
        MINIMAL: one_header,
        OURS: AiohttpAuth(pipeline_for(ORIGIN)),
    }
    response = canned(aiohttp.ClientRequest("GET", YarlURL(URL), loop=loop), None)

    async def handler(request: aiohttp.ClientRequest) -> aiohttp.ClientResponse:
        return response

    async def run(name: str, count: int) -> Clocks:
        middleware = middlewares[name]
        prepared = [aiohttp.ClientRequest("GET", YarlURL(URL), loop=loop) for _ in range(count)]

        async def body() -> None:
            if middleware is None:
                for request in prepared:
                    request.headers["Authorization"] = f"Bearer {TOKEN}"
                    await handler(request)
                return
            for request in prepared:
                await middleware(request, handler)

        return await atimed(body)

    samples = await ainterleave(list(middlewares), run, rounds, n)
    return summarise(samples, ALONE, rounds, n)


async def whole(
    origin: str, url: str, *, mock: bool, setting: str, rounds: int, n: int
) -> dict[str, Any]:
    variants: dict[str, aiohttp.ClientSession] = {}
    for name, chain in chains(origin).items():
        holder: list[Any] = []
        last = (terminal(holder),) if mock else ()
        headers = dict([HEADER]) if name == STATIC else None
        session = aiohttp.ClientSession(headers=headers, middlewares=(*chain, *last))
        holder.append(session)
        variants[name] = session

    async def run(name: str, count: int) -> Clocks:
        session = variants[name]

        async def body() -> None:
            for _ in range(count):
                async with session.get(url) as response:
                    await response.read()

        return await atimed(body)

    try:
        for session in variants.values():
            async with session.get(url) as response:
                response.raise_for_status()
                await response.read()
        samples = await ainterleave(list(variants), run, rounds, n)
        return summarise(samples, setting, rounds, n)
    finally:
        for session in variants.values():
            await session.close()


def measure(args: Namespace) -> dict[str, Any]:
    from asapp_auth.testing import FakePlatform

    async def main() -> dict[str, Any]:
        settings = {
            ALONE: await alone(*size(ALONE, args.quick)),
            MOCK: await whole(ORIGIN, URL, mock=True, setting=MOCK, **sized(MOCK, args.quick)),
        }
        with FakePlatform() as platform:
            url = f"{platform.url}/public"
            settings[LOOPBACK] = await whole(
                platform.origin, url, mock=False, setting=LOOPBACK, **sized(LOOPBACK, args.quick)
            )
        return settings

    adapter = {
        "settings": asyncio.run(main()),
        "mock": "a last client middleware answering a canned ClientResponse (no connector)",
        "versions": versions("aiohttp", "yarl", "multidict"),
    }
    return {"aiohttp": adapter}


if __name__ == "__main__":
    sys.exit(section_main(__doc__, measure, sys.argv[1:]))
