"""Every client asapp-auth wraps, behind one small synchronous face for the shared suite.

A test asks a ``Kind`` for a ``Session`` wrapping an ``AuthPipeline`` (or a fixed-customer
handle) and makes requests through it; async clients run on an event loop of their own thread,
so one test body drives all six: httpx and httpx2 (sync and async), requests and aiohttp.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import httpx2
import requests
import requests.adapters

from asapp_auth import AuthPipeline, CustomerAuth
from asapp_auth.aiohttp import AiohttpAuth
from asapp_auth.httpx2 import Httpx2Auth
from asapp_auth.requests import RequestsAuth

Auth = AuthPipeline | CustomerAuth


@dataclass(frozen=True)
class Result:
    """What a request came back with, in the same shape for every client."""

    status: int
    body: bytes
    hops: int  # responses before this one: redirects and retries the client kept


class _Loop:
    """An event loop in a daemon thread, for driving async clients from sync tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class Session:
    """One client wrapping one auth; ``request`` and ``many`` are the same for every kind."""

    kind: str
    is_async = False

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = True,
    ) -> Result:
        raise NotImplementedError

    def many(self, n: int, url: str) -> list[Result | BaseException]:
        """``n`` GETs at once: ``n`` threads for a sync client, ``n`` tasks for an async one."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _threads(n: int, call: Callable[[], Result]) -> list[Result | BaseException]:
    barrier = threading.Barrier(n)

    def one() -> Result | BaseException:
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: one(), range(n)))


def _chunks() -> Iterator[bytes]:
    yield b'{"streamed": true}'


async def _achunks() -> AsyncIterator[bytes]:
    yield b'{"streamed": true}'


class _HttpxSync(Session):
    def __init__(self, module: Any, auth: Any, pool: int) -> None:
        limits = module.Limits(max_connections=pool, max_keepalive_connections=pool)
        self.client = module.Client(auth=auth, limits=limits, timeout=30)

    def request(self, method: str, url: str, **kw: Any) -> Result:
        content = _chunks() if kw.pop("stream", False) else None
        r = self.client.request(
            method,
            url,
            json=kw.get("json"),
            headers=kw.get("headers"),
            content=content,
            follow_redirects=kw.get("follow_redirects", True),
        )
        return Result(r.status_code, r.content, len(r.history))

    def many(self, n: int, url: str) -> list[Result | BaseException]:
        return _threads(n, lambda: self.request("GET", url))

    def close(self) -> None:
        self.client.close()


class _HttpxAsync(Session):
    is_async = True

    def __init__(self, module: Any, auth: Any, pool: int) -> None:
        self._loop = _Loop()
        limits = module.Limits(max_connections=pool, max_keepalive_connections=pool)

        async def make() -> Any:
            return module.AsyncClient(auth=auth, limits=limits, timeout=30)

        self.client = self._loop.run(make())
        self._make = lambda: module.AsyncClient(auth=auth, limits=limits, timeout=60)

    async def _one(self, method: str, url: str, client: Any = None, **kw: Any) -> Result:
        content = _achunks() if kw.pop("stream", False) else None
        r = await (client or self.client).request(
            method,
            url,
            json=kw.get("json"),
            headers=kw.get("headers"),
            content=content,
            follow_redirects=kw.get("follow_redirects", True),
        )
        return Result(r.status_code, r.content, len(r.history))

    def request(self, method: str, url: str, **kw: Any) -> Result:
        return self._loop.run(self._one(method, url, **kw))  # type: ignore[no-any-return]

    def many(self, n: int, url: str) -> list[Result | BaseException]:
        async def gather() -> list[Result | BaseException]:
            # httpcore's async pool is quadratic in queued requests: spread them over clients.
            clients = [self._make() for _ in range(max(1, n // 40))]
            try:
                return list(
                    await asyncio.gather(
                        *(self._one("GET", url, clients[i % len(clients)]) for i in range(n)),
                        return_exceptions=True,
                    )
                )
            finally:
                for client in clients:
                    await client.aclose()

        return self._loop.run(gather(), timeout=120)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._loop.run(self.client.aclose())
        self._loop.close()


class _Requests(Session):
    def __init__(self, auth: Any, pool: int) -> None:
        self.client = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool)
        self.client.mount("http://", adapter)
        self.client.auth = RequestsAuth(auth)

    def request(self, method: str, url: str, **kw: Any) -> Result:
        data = _chunks() if kw.pop("stream", False) else None
        r = self.client.request(
            method,
            url,
            json=kw.get("json"),
            headers=kw.get("headers"),
            data=data,
            allow_redirects=kw.get("follow_redirects", True),
            timeout=30,
        )
        return Result(r.status_code, r.content, len(r.history))

    def many(self, n: int, url: str) -> list[Result | BaseException]:
        return _threads(n, lambda: self.request("GET", url))

    def close(self) -> None:
        self.client.close()


class _Aiohttp(Session):
    is_async = True

    def __init__(self, auth: Any, pool: int) -> None:
        self._loop = _Loop()
        middleware = AiohttpAuth(auth)

        async def make() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=pool)
            return aiohttp.ClientSession(connector=connector, middlewares=(middleware,))

        self.client: aiohttp.ClientSession = self._loop.run(make())

    async def _one(self, method: str, url: str, **kw: Any) -> Result:
        data = _achunks() if kw.pop("stream", False) else None
        async with self.client.request(
            method,
            url,
            json=kw.get("json"),
            headers=kw.get("headers"),
            data=data,
            allow_redirects=kw.get("follow_redirects", True),
        ) as r:
            return Result(r.status, await r.read(), len(r.history))

    def request(self, method: str, url: str, **kw: Any) -> Result:
        return self._loop.run(self._one(method, url, **kw))  # type: ignore[no-any-return]

    def many(self, n: int, url: str) -> list[Result | BaseException]:
        async def gather() -> list[Result | BaseException]:
            return list(
                await asyncio.gather(
                    *(self._one("GET", url) for _ in range(n)), return_exceptions=True
                )
            )

        return self._loop.run(gather(), timeout=120)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._loop.run(self.client.close())
        self._loop.close()


def _httpx_auth(auth: Auth) -> Any:
    return auth


KINDS: dict[str, Callable[[Auth, int], Session]] = {
    "httpx": lambda auth, pool: _HttpxSync(httpx, _httpx_auth(auth), pool),
    "httpx-async": lambda auth, pool: _HttpxAsync(httpx, _httpx_auth(auth), pool),
    "httpx2": lambda auth, pool: _HttpxSync(httpx2, Httpx2Auth(auth), pool),
    "httpx2-async": lambda auth, pool: _HttpxAsync(httpx2, Httpx2Auth(auth), pool),
    "requests": _Requests,
    "aiohttp": _Aiohttp,
}


ASYNC_KINDS = frozenset({"httpx-async", "httpx2-async", "aiohttp"})


def open_session(kind: str, auth: Auth, pool: int = 16) -> Session:
    session = KINDS[kind](auth, pool)
    session.kind = kind
    return session
