"""One worker process of a fleet sharing a Redis cache, for tests/test_redis_cache.py.

Run as ``python fleet_worker.py JSON``. It waits for ``start_at`` (wall clock), makes ``callers``
concurrent requests as one customer (threads, or asyncio tasks), and prints one JSON line: the
status codes it got, the errors it raised, and how often its provider was asked.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import threading
import time
from typing import Any

import httpx

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth.redis_cache import RedisContextCache


def main(options: dict[str, Any]) -> None:
    asked = []

    def provider(needs_refresh: bool) -> AuthContext:
        asked.append(needs_refresh)
        if options.get("hang"):
            print("PROVIDER_CALLED", flush=True)
            time.sleep(60)
        answer = httpx.post(f"{options['platform']}/mint", json={"customer": options["customer"]})
        answer.raise_for_status()
        minted = answer.json()
        return AuthContext({"Auth": {"Token": minted["token"]}}, expires_in=minted["expires_in"])

    provider.cache_scope = "fleet-worker"  # type: ignore[attr-defined]
    cache = RedisContextCache(
        options["redis"],
        keys=[options["key"]],
        namespace=options["namespace"],
        cluster=options.get("cluster", False),
        lock_ttl=options.get("lock_ttl", 30),
    )
    pipeline = AuthPipeline([options["platform"]], cache=cache, provider_timeout=20)
    pipeline.load(options["customer"], provider)
    statuses: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    callers = options["callers"]
    time.sleep(max(0.0, options["start_at"] - time.time()))

    if options["mode"] == "threads":
        with httpx.Client(auth=pipeline, limits=httpx.Limits(max_connections=callers)) as client:

            def call() -> None:
                try:
                    statuses[str(client.get(f"{options['platform']}/v1/account").status_code)] += 1
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

            threads = [threading.Thread(target=call) for _ in range(callers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    else:

        async def run() -> None:
            limits = httpx.Limits(max_connections=callers)
            async with httpx.AsyncClient(auth=pipeline, limits=limits) as client:

                async def call() -> None:
                    try:
                        response = await client.get(f"{options['platform']}/v1/account")
                        statuses[str(response.status_code)] += 1
                    except Exception as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")

                await asyncio.gather(*(call() for _ in range(callers)))

        asyncio.run(run())
    print(json.dumps({"statuses": statuses, "errors": errors, "asked": asked}), flush=True)
    cache.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
