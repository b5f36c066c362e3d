"""The cached path on httpx or httpx2 (``--client``), sync and async: one section of
``bench_cached_path.py``, run in a process of its own.

authlib's httpx integration binds to httpx2 whenever httpx2 is importable: the httpx section
keeps httpx2 out of its process (``_httpx_only``) before anything imports authlib, so its authlib
anchor runs on httpx; in the httpx2 section authlib runs on httpx2, and is labelled so.
"""

from __future__ import annotations

import asyncio
import sys
import time
import warnings
from argparse import Namespace
from types import ModuleType
from typing import Any

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
    interleave,
    pipeline_for,
    section_main,
    size,
    sized,
    summarise,
    timed,
    versions,
)

GUARDED = "asapp-auth, token + one more header (redirect guard on)"
# httpcore 1 tries ``import sniffio`` for every request's locks under asyncio; this environment
# has no sniffio (anyio 4 no longer needs it), and a failed import scans sys.path each time,
# costing every variant alike ~0.3 ms a request. Fail it at once; httpcore then assumes asyncio.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


def module_for(name: str) -> ModuleType:
    if name == "httpx":
        import _httpx_only  # noqa: F401  (before authlib: its anchor must run on httpx)
        import httpx

        return httpx
    import httpx2

    return httpx2


def ours(mod: ModuleType, pipeline: Any) -> Any:
    """asapp-auth's auth for this client: the pipeline itself on httpx, ``Httpx2Auth`` on httpx2."""
    if mod.__name__ == "httpx":
        return pipeline
    from asapp_auth.httpx2 import Httpx2Auth

    return Httpx2Auth(pipeline)


def one_header(mod: ModuleType) -> Any:
    class OneHeader(mod.Auth):  # type: ignore[name-defined,misc]
        """The minimal hand-written auth: it sets one header."""

        def auth_flow(self, request: Any) -> Any:
            request.headers["Authorization"] = f"Bearer {TOKEN}"
            yield request

    return OneHeader()


def authlib_clients(mod: ModuleType) -> tuple[Any, Any] | None:
    """authlib's OAuth2Client and AsyncOAuth2Client classes, bound to ``mod``, if installed."""
    try:
        with warnings.catch_warnings():
            import authlib.deprecate  # noqa: F401  (it sets "always" for its warnings: filter after)

            # On httpx, authlib warns on import that its httpx support moves to httpx2.
            warnings.simplefilter("ignore")
            from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
    except ImportError:
        return None
    from authlib.integrations.httpx_client._compat import httpx2 as bound

    assert bound is mod, f"authlib is bound to {bound.__name__}, not {mod.__name__}"
    return OAuth2Client, AsyncOAuth2Client


def authlib_name(mod: ModuleType) -> str:
    return "authlib OAuth2Client" + ("" if mod.__name__ == "httpx" else " (on httpx2)")


def authlib_token() -> dict[str, Any]:
    return {"access_token": TOKEN, "token_type": "Bearer", "expires_at": time.time() + 3600}


def clients(mod: ModuleType, transport: Any, origin: str, sync: bool) -> dict[str, Any]:
    """Every variant's client for this transport, warmed up by the caller."""
    cls = mod.Client if sync else mod.AsyncClient
    variants = {
        STATIC: cls(transport=transport, headers=dict([HEADER])),
        MINIMAL: cls(transport=transport, auth=one_header(mod)),
        OURS: cls(transport=transport, auth=ours(mod, pipeline_for(origin))),
    }
    if sync and mod.__name__ == "httpx":
        try:
            import httpx_auth
        except ImportError:
            pass
        else:

            def token_endpoint(request: Any) -> Any:
                body = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}
                return mod.Response(200, json=body)

            token_client = mod.Client(transport=mod.MockTransport(token_endpoint))
            auth = httpx_auth.OAuth2ClientCredentials(
                "https://auth.example/token", client_id="id", client_secret="x", client=token_client
            )
            variants["httpx-auth client credentials"] = cls(transport=transport, auth=auth)
    found = authlib_clients(mod)
    if found is not None:
        oauth2 = found[0] if sync else found[1]
        variants[authlib_name(mod)] = oauth2(
            client_id="id", client_secret="x", token=authlib_token(), transport=transport
        )
    return variants


# -- the auth flow alone --------------------------------------------------------------------------


def alone_auths(mod: ModuleType) -> dict[str, Any]:
    return {
        STATIC: None,
        MINIMAL: one_header(mod),
        OURS: ours(mod, pipeline_for(ORIGIN)),
        GUARDED: ours(mod, pipeline_for(ORIGIN, {"X-Session": "s"})),
    }


def alone_sync(mod: ModuleType, rounds: int, n: int) -> dict[str, Any]:
    """Each auth's flow driven as httpx drives it, on prebuilt requests: no client, no I/O."""
    auths = alone_auths(mod)
    response = mod.Response(200, content=b"{}")

    def run(name: str, count: int) -> Clocks:
        auth = auths[name]
        requests = [mod.Request("GET", URL) for _ in range(count)]

        def body() -> None:
            if auth is None:
                for request in requests:
                    request.headers["Authorization"] = f"Bearer {TOKEN}"
                return
            for request in requests:
                flow = auth.sync_auth_flow(request)
                next(flow)
                try:
                    flow.send(response)
                except StopIteration:
                    pass
                flow.close()

        return timed(body)

    return summarise(interleave(list(auths), run, rounds, n), ALONE, rounds, n)


def alone_async(mod: ModuleType, rounds: int, n: int) -> dict[str, Any]:
    """As ``alone_sync``, through ``async_auth_flow`` on an event loop."""
    auths = alone_auths(mod)
    response = mod.Response(200, content=b"{}")

    async def run(name: str, count: int) -> Clocks:
        auth = auths[name]
        requests = [mod.Request("GET", URL) for _ in range(count)]

        async def body() -> None:
            if auth is None:
                for request in requests:
                    request.headers["Authorization"] = f"Bearer {TOKEN}"
                return
            for request in requests:
                flow = auth.async_auth_flow(request)
                await flow.__anext__()
                try:
                    await flow.asend(response)
                except StopAsyncIteration:
                    pass
                await flow.aclose()

        return await atimed(body)

    async def main() -> dict[str, Any]:
        return summarise(await ainterleave(list(auths), run, rounds, n), ALONE, rounds, n)

    return asyncio.run(main())


# -- whole requests -------------------------------------------------------------------------------


def requests_sync(
    mod: ModuleType, transport: Any, origin: str, url: str, *, setting: str, rounds: int, n: int
) -> dict[str, Any]:
    variants = clients(mod, transport, origin, sync=True)
    for client in variants.values():
        client.get(url)  # warm up: first token, connections

    def run(name: str, count: int) -> Clocks:
        client = variants[name]

        def body() -> None:
            for _ in range(count):
                client.get(url)

        return timed(body)

    try:
        return summarise(interleave(list(variants), run, rounds, n), setting, rounds, n)
    finally:
        for client in variants.values():
            client.close()


def requests_async(
    mod: ModuleType, transport: Any, origin: str, url: str, *, setting: str, rounds: int, n: int
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        variants = clients(mod, transport, origin, sync=False)

        async def run(name: str, count: int) -> Clocks:
            client = variants[name]

            async def body() -> None:
                for _ in range(count):
                    await client.get(url)

            return await atimed(body)

        try:
            for client in variants.values():
                await client.get(url)
            samples = await ainterleave(list(variants), run, rounds, n)
            return summarise(samples, setting, rounds, n)
        finally:
            for client in variants.values():
                await client.aclose()

    return asyncio.run(main())


def measure(args: Namespace) -> dict[str, Any]:
    mod = module_for(args.client)
    from asapp_auth.testing import FakePlatform

    def ok(request: Any) -> Any:
        return mod.Response(200, content=b"{}")

    name = mod.__name__
    sync: dict[str, Any] = {"settings": {}}
    asynchronous: dict[str, Any] = {"settings": {}}
    sync["settings"][ALONE] = alone_sync(mod, *size(ALONE, args.quick))
    asynchronous["settings"][ALONE] = alone_async(mod, *size(ALONE, args.quick))
    mock = mod.MockTransport(ok)
    mocked = {"setting": MOCK, **sized(MOCK, args.quick)}
    sync["settings"][MOCK] = requests_sync(mod, mock, ORIGIN, URL, **mocked)
    asynchronous["settings"][MOCK] = requests_async(mod, mock, ORIGIN, URL, **mocked)
    with FakePlatform() as platform:
        url = f"{platform.url}/public"
        served = {"setting": LOOPBACK, **sized(LOOPBACK, args.quick)}
        sync["settings"][LOOPBACK] = requests_sync(
            mod, mod.HTTPTransport(), platform.origin, url, **served
        )
        asynchronous["settings"][LOOPBACK] = requests_async(
            mod, mod.AsyncHTTPTransport(), platform.origin, url, **served
        )
    mock_name = f"{name}.MockTransport"
    for adapter in (sync, asynchronous):
        adapter["mock"] = mock_name
        adapter["versions"] = versions(name, "httpcore" if name == "httpx" else "httpcore2")
    return {name: sync, f"{name} async": asynchronous}


if __name__ == "__main__":
    sys.exit(section_main(__doc__, measure, sys.argv[1:]))
