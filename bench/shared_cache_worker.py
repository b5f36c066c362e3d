"""One worker process of bench_shared_cache.py's fleet, driven by JSON lines on stdin.

Run as ``python shared_cache_worker.py JSON`` (the platform, token endpoint, Redis, key, customer
and number of callers). It opens its connections beforehand (``callers`` of them over 25
``httpx.Client``s for its threads, as many again over 25 ``httpx.AsyncClient``s for its tasks),
prints ``{"ready": true}``, then answers each command with one JSON line:

- ``{"op": "pipeline", "backend": "redis" | "redis-cluster" | "memory", "namespace": NS}``: a new
  pipeline for that backend, with nothing cached, on a ``RedisContextCache`` in that namespace
  (on the one server, or on the cluster of ``cluster``) or a ``MemoryContextCache``.
- ``{"op": "burst", "backend": B, "mode": "threads" | "asyncio", "start_at": T, "callers": N}``:
  with that backend's pipeline, ``N`` GETs (at most ``callers``) of
  ``/v1/account``, threads or asyncio tasks all made beforehand and released together at the
  wall-clock time ``T``. Answers the status codes, errors, provider calls, and the wall-clock
  time of the last answer.
- ``{"op": "quit"}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import sys
import threading
import time
from collections import Counter
from typing import Any

import httpx

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth.redis_cache import RedisContextCache

# As in bench_stampede.py: without sniffio installed, httpcore's per-request ``import sniffio``
# under asyncio scans sys.path each time. Fail it at once; httpcore then assumes asyncio.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

TIMEOUT = httpx.Timeout(60.0)
# Every client is plain HTTP: one SSL context for all, as each new one loads the CA bundle.
SSL = ssl.create_default_context()
# Callers share 25 clients, as bench_stampede.py's tasks do: httpcore's pools, sync and async,
# are quadratic in waiting requests (200 threads on one httpx.Client take seconds with no
# refresh to do, some 20 times what they take over 25 clients): that would drown the refresh.
CLIENTS = 25
# Status codes, errors, and wall-clock times: the release, the first 200, the last answer.
Outcome = tuple[Counter[str], list[str], float, float, float]


class Worker:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.callers: int = options["callers"]
        self.api = f"{options['platform']}/v1/account"
        self.public = f"{options['platform']}/public"
        per_client = -(-self.callers // CLIENTS)
        # The connections opened at start serve every burst.
        limits = httpx.Limits(
            max_connections=per_client, max_keepalive_connections=per_client, keepalive_expiry=600
        )
        self.clients = [
            httpx.Client(timeout=TIMEOUT, limits=limits, verify=SSL) for _ in range(CLIENTS)
        ]
        self.minting = httpx.Client(timeout=TIMEOUT, verify=SSL)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.aclients: list[httpx.AsyncClient] = [
            self.on_loop(self.make_async_client(limits)) for _ in range(CLIENTS)
        ]
        self.pipelines: dict[str, AuthPipeline] = {}
        self.caches: dict[str, RedisContextCache] = {}
        self.asked = 0

    def on_loop(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    @staticmethod
    async def make_async_client(limits: httpx.Limits) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=TIMEOUT, limits=limits, verify=SSL)

    def provider(self) -> Any:
        """A new provider function, which the fleet's processes share under one scope."""

        def provide(needs_refresh: bool) -> AuthContext:
            self.asked += 1
            customer = self.options["customer"]
            answer = self.minting.post(self.options["mint"], json={"customer": customer})
            answer.raise_for_status()
            minted = answer.json()
            token, lifetime = minted["token"], minted["expires_in"]
            return AuthContext({"Auth": {"Token": token}}, expires_in=lifetime)

        provide.cache_scope = "bench-fleet"  # type: ignore[attr-defined]
        return provide

    def warm(self) -> None:
        """Open every connection beforehand, so that no burst pays for a connect."""
        self.minting.get(self.options["mint"])
        opened = self.threads(
            lambda i: self.clients[i % CLIENTS].get(self.public).status_code,
            time.time(),
            self.callers,
        )
        assert opened[0] == {"200": self.callers}, opened

        async def get(i: int) -> int:
            return (await self.aclients[i % CLIENTS].get(self.public)).status_code

        opened = self.on_loop(self.tasks(get, time.time(), self.callers))
        assert opened[0] == {"200": self.callers}, opened

    def new_pipeline(self, backend: str, namespace: str) -> None:
        old = self.caches.pop(backend, None)
        if old is not None:
            # Closing waits for its listener's next poll (up to a second): not on this path.
            threading.Thread(target=old.close, daemon=True).start()
        cache = None
        if backend in ("redis", "redis-cluster"):
            on_cluster = backend == "redis-cluster"
            cache = self.caches[backend] = RedisContextCache(
                self.options["cluster" if on_cluster else "redis"],
                keys=[self.options["key"]],
                namespace=namespace,
                cluster=on_cluster,
            )
        pipeline = AuthPipeline([self.options["platform"]], cache=cache, provider_timeout=20)
        pipeline.load(self.options["customer"], self.provider())
        self.pipelines[backend] = pipeline

    def threads(self, work: Any, start_at: float, n: int) -> Outcome:
        """``n`` threads made beforehand, released at ``start_at``; ``work(i)`` for the ``i``-th."""
        go = threading.Event()
        statuses: Counter[str] = Counter()
        errors: list[str] = []
        ends: list[float] = []
        oks: list[float] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            go.wait()
            try:
                status = str(work(i))
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    ends.append(time.time())
                return
            end = time.time()
            with lock:
                statuses[status] += 1
                ends.append(end)
                if status == "200":
                    oks.append(end)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, start_at - time.time()))
        released = time.time()
        go.set()
        for thread in threads:
            thread.join()
        return statuses, errors, released, min(oks, default=math.inf), max(ends)

    async def tasks(self, work: Any, start_at: float, n: int) -> Outcome:
        """``n`` tasks made beforehand, released at ``start_at``; ``work(i)`` for the ``i``-th."""
        go = asyncio.Event()
        statuses: Counter[str] = Counter()
        errors: list[str] = []
        ends: list[float] = []
        oks: list[float] = []

        async def call(i: int) -> None:
            await go.wait()
            try:
                status = str(await work(i))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                statuses[status] += 1
                if status == "200":
                    oks.append(time.time())
            ends.append(time.time())

        tasks = [asyncio.create_task(call(i)) for i in range(n)]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        released = time.time()
        go.set()
        await asyncio.gather(*tasks)
        return statuses, errors, released, min(oks, default=math.inf), max(ends)

    def burst(self, backend: str, mode: str, start_at: float, n: int) -> dict[str, Any]:
        pipeline = self.pipelines[backend]
        asked = self.asked
        if mode == "threads":
            outcome = self.threads(
                lambda i: self.clients[i % CLIENTS].get(self.api, auth=pipeline).status_code,
                start_at,
                n,
            )
        else:

            async def get(i: int) -> int:
                client = self.aclients[i % CLIENTS]
                return (await client.get(self.api, auth=pipeline)).status_code

            outcome = self.on_loop(self.tasks(get, start_at, n))
        statuses, errors, released, first_ok, last = outcome
        return {
            "statuses": dict(statuses),
            "errors": errors[:5],
            "error_count": len(errors),
            "asked": self.asked - asked,
            "released": released,
            "first_ok": first_ok,
            "last": last,
        }


def main(options: dict[str, Any]) -> None:
    worker = Worker(options)
    worker.warm()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        if command["op"] == "pipeline":
            worker.new_pipeline(command["backend"], command["namespace"])
            answer: dict[str, Any] = {"ok": True}
        else:
            answer = worker.burst(
                command["backend"], command["mode"], command["start_at"], command["callers"]
            )
        print(json.dumps(answer), flush=True)
    for cache in worker.caches.values():
        cache.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
