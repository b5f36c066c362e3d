"""Any client asapp-auth wraps, behind one small synchronous face: for the demo
(``asapp-auth demo --client requests``) and for tests that run one scenario over every client.

``open_client(kind, auth)`` wraps an ``AuthPipeline`` (or a fixed-customer handle) in a new client
of that kind; async clients run on an event loop of their own thread. Each client library is
imported only when its kind is opened.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

__all__ = ["ASYNC_KINDS", "KINDS", "AnyClient", "Result", "open_client"]

KINDS = ("httpx", "httpx-async", "httpx2", "httpx2-async", "requests", "aiohttp")
ASYNC_KINDS = frozenset({"httpx-async", "httpx2-async", "aiohttp"})
# The pip extra each kind needs, for messages.
EXTRAS = {
    "httpx2": "httpx2",
    "httpx2-async": "httpx2",
    "requests": "requests",
    "aiohttp": "aiohttp",
}


@dataclass(frozen=True)
class Result:
    """What a request came back with, in the same shape for every client."""

    status: int
    body: bytes
    hops: int  # earlier responses the client kept: redirects and retries

    def json(self) -> Any:
        return json.loads(self.body)


class _Loop:
    """An event loop in a daemon thread, for driving async clients from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 500) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class AnyClient:
    """One client wrapping one auth; ``request`` and ``many`` are the same for every kind."""

    kind = "?"
    client: Any

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
        """Send one request; ``stream=True`` sends a body that cannot be replayed."""
        raise NotImplementedError

    def get(self, url: str, **kwargs: Any) -> Result:
        return self.request("GET", url, **kwargs)

    def many(self, n: int, url: str) -> list[Result | Exception]:
        """``n`` GETs at once: ``n`` threads for a sync client, ``n`` tasks for an async one."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _threads(n: int, call: Callable[[], Result]) -> list[Result | Exception]:
    barrier = threading.Barrier(n)

    def one(_: int) -> Result | Exception:
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _chunks() -> Iterator[bytes]:
    yield b'{"streamed": true}'


async def _achunks() -> AsyncIterator[bytes]:
    yield b'{"streamed": true}'


class _HttpxSync(AnyClient):
    def __init__(self, module: Any, auth: Any, pool: int) -> None:
        limits = module.Limits(max_connections=pool, max_keepalive_connections=pool)
        self.client = module.Client(auth=auth, limits=limits, timeout=120)

    def request(self, method: str, url: str, **kw: Any) -> Result:
        r = self.client.request(
            method,
            url,
            json=kw.get("json"),
            headers=kw.get("headers"),
            content=_chunks() if kw.get("stream") else None,
            follow_redirects=kw.get("follow_redirects", True),
        )
        return Result(r.status_code, r.content, len(r.history))

    def many(self, n: int, url: str) -> list[Result | Exception]:
        return _threads(n, lambda: self.request("GET", url))

    def close(self) -> None:
        self.client.close()


class _AsyncClient(AnyClient):
    """An async client driven from sync code; ``_one`` sends one request on the loop."""

    def __init__(self) -> None:
        self._loop = _Loop()

    async def _one(self, method: str, url: str, client: Any = None, **kw: Any) -> Result:
        raise NotImplementedError

    def _burst(self, n: int) -> list[Any]:
        return [self.client]

    def request(self, method: str, url: str, **kw: Any) -> Result:
        result: Result = self._loop.run(self._one(method, url, **kw))
        return result

    def many(self, n: int, url: str) -> list[Result | Exception]:
        async def gather() -> list[Any]:
            clients = self._burst(n)
            try:
                return list(
                    await asyncio.gather(
                        *(self._one("GET", url, clients[i % len(clients)]) for i in range(n)),
                        return_exceptions=True,
                    )
                )
            finally:
                for client in clients:
                    if client is not self.client:
                        await client.aclose()

        results: list[Result | Exception] = self._loop.run(gather())
        return results


class _HttpxAsync(_AsyncClient):
    def __init__(self, module: Any, auth: Any, pool: int) -> None:
        super().__init__()
        limits = module.Limits(max_connections=pool, max_keepalive_connections=pool)

        def new_client() -> Any:
            return module.AsyncClient(auth=auth, limits=limits, timeout=120)

        self._make = new_client

        async def make() -> Any:
            return self._make()

        self.client = self._loop.run(make())

    def _burst(self, n: int) -> list[Any]:
        # httpcore's async pool is quadratic in queued requests: spread a burst over clients.
        return [self._make() for _ in range(max(1, n // 40))]

    async def _one(self, method: str, url: str, client: Any = None, **kw: Any) -> Result:
        r = await (client or self.client).request(
            method,
            url,
            json=kw.get("json"),
            headers=kw.get("headers"),
            content=_achunks() if kw.get("stream") else None,
            follow_redirects=kw.get("follow_redirects", True),
        )
        return Result(r.status_code, r.content, len(r.history))

    def close(self) -> None:
        self._loop.run(self.client.aclose())
        self._loop.close()


class _Requests(AnyClient):
    def __init__(self, auth: Any, pool: int) -> None:
        import requests
        import requests.adapters

        from .requests import RequestsAuth

        self.client = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool)
        self.client.mount("http://", adapter)
        self.client.mount("https://", adapter)
        self.client.auth = RequestsAuth(auth)

    def request(self, method: str, url: str, **kw: Any) -> Result:
        r = self.client.request(
            method,
            url,
            json=kw.get("json"),
            headers=kw.get("headers"),
            data=_chunks() if kw.get("stream") else None,
            allow_redirects=kw.get("follow_redirects", True),
            timeout=120,
        )
        return Result(r.status_code, r.content, len(r.history))

    def many(self, n: int, url: str) -> list[Result | Exception]:
        return _threads(n, lambda: self.request("GET", url))

    def close(self) -> None:
        self.client.close()


class _Aiohttp(_AsyncClient):
    def __init__(self, auth: Any, pool: int) -> None:
        import aiohttp

        from .aiohttp import AiohttpAuth

        super().__init__()
        middleware = AiohttpAuth(auth)

        async def make() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=pool)
            return aiohttp.ClientSession(connector=connector, middlewares=(middleware,))

        self.client = self._loop.run(make())

    async def _one(self, method: str, url: str, client: Any = None, **kw: Any) -> Result:
        async with self.client.request(
            method,
            url,
            json=kw.get("json"),
            headers=kw.get("headers"),
            data=_achunks() if kw.get("stream") else None,
            allow_redirects=kw.get("follow_redirects", True),
        ) as r:
            return Result(r.status, await r.read(), len(r.history))

    def close(self) -> None:
        self._loop.run(self.client.close())
        self._loop.close()


def open_client(kind: str, auth: Any, pool: int = 16) -> AnyClient:
    """A new client of ``kind`` (one of ``KINDS``) authenticating through ``auth``.

    Raises ``ImportError`` when that client is not installed.
    """
    opened: AnyClient
    if kind in ("httpx", "httpx-async"):
        import httpx

        opened = (_HttpxSync if kind == "httpx" else _HttpxAsync)(httpx, auth, pool)
    elif kind in ("httpx2", "httpx2-async"):
        import httpx2

        from .httpx2 import Httpx2Auth

        cls = _HttpxSync if kind == "httpx2" else _HttpxAsync
        opened = cls(httpx2, Httpx2Auth(auth), pool)
    elif kind == "requests":
        opened = _Requests(auth, pool)
    elif kind == "aiohttp":
        opened = _Aiohttp(auth, pool)
    else:
        raise ValueError(f"no client kind {kind!r}; choose one of {', '.join(KINDS)}")
    opened.kind = kind
    return opened
