"""The shared cache within managed services' limits: keys evicted under it (``volatile-lru``),
restricted commands refused, scripts forbidden, and only Redis 7.2 commands, each script on the
one key it names."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis_helpers import Minter, Target, cut_off

from asapp_auth import AuthContext, AuthPipeline
from asapp_auth._redis_servers import _command
from asapp_auth.errors import ProviderError
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import generate_key
from asapp_auth.testing import FakePlatform, RedisClusterServer

KEY = generate_key()
# What ElastiCache refuses (its "restricted commands"), and every command Redis counts dangerous.
RESTRICTED = "-bgrewriteaof -bgsave -config -debug -migrate -replicaof -save -slaveof -shutdown"
RESTRICTED += " -sync -psync -@dangerous"


def pipeline_for(platform: FakePlatform, cache: RedisContextCache) -> AuthPipeline:
    return AuthPipeline([platform.origin], cache=cache)


def two_processes(
    platform: FakePlatform, target: Target, namespace: str, minter: Minter, **options: Any
) -> tuple[AuthPipeline, AuthPipeline]:
    """Two pipelines with caches of their own on one namespace, as two processes have."""
    made = []
    for _ in range(2):
        pipeline = pipeline_for(platform, target.cache(namespace, KEY, **options))
        pipeline.load("alice", minter)
        made.append(pipeline)
    return made[0], made[1]


def key_of(pipeline: AuthPipeline) -> str:
    cache = pipeline._cache
    assert isinstance(cache, RedisContextCache)
    customer = pipeline.customer
    assert customer is not None
    return cache._name(customer, pipeline._provider_id(customer))  # type: ignore[arg-type]


def _until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


class Gated(Minter):
    """A minter that, in the thread named ``holder``, waits in the provider until released."""

    def __init__(self, platform: FakePlatform, customer: str) -> None:
        super().__init__(platform, customer)
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, needs_refresh: bool) -> AuthContext:
        if threading.current_thread().name == "holder":
            self.entered.set()
            self.release.wait(10)
        return super().__call__(needs_refresh)


# -- evictions ----------------------------------------------------------------------------------


def test_a_key_evicted_mid_refresh_is_a_miss_and_the_holder_stores_nothing(
    platform: FakePlatform, target: Target, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The customer's key evicted (entry and lock at once) while a process refreshes: that
    process stores nothing, and the next one finds a miss and refreshes for itself."""
    minter = Gated(platform, "alice")
    a, _ = two_processes(platform, target, namespace, minter, lock_ttl=30)
    old = a.get_context()
    assert old is not None
    name = key_of(a)
    held: list[str | None] = []
    holder = threading.Thread(
        target=lambda: held.append(a.get_context(needs_refresh=True).token),  # type: ignore[union-attr]
        name="holder",
    )
    holder.start()
    assert minter.entered.wait(10)
    target.raw().delete(name)  # evicted, as volatile-lru evicts a key: every field at once
    minter.release.set()
    holder.join()
    assert held[0] not in (None, old.token)
    assert "lapsed before its context was stored" in caplog.text
    assert target.entry(name) is None  # a holder without its lock stores nothing
    third = pipeline_for(platform, target.cache(namespace, KEY))
    third.load("alice", minter)
    assert third.get_context().token not in (old.token, held[0])  # type: ignore[union-attr]
    assert len(minter.calls) == 3


def test_a_tombstone_evicted_mid_refresh_does_not_bring_a_cleared_customer_back(
    platform: FakePlatform, target: Target, namespace: str
) -> None:
    """A customer cleared while a process refreshes, then the key evicted with its tombstone:
    the lock went with it, so the refresh is not stored and no process serves the customer's
    cleared contexts."""
    minter = Gated(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter, lock_ttl=30)
    old = a.get_context()
    assert old is not None
    name = key_of(a)
    held: list[str | None] = []
    holder = threading.Thread(
        target=lambda: held.append(a.get_context(needs_refresh=True).token),  # type: ignore[union-attr]
        name="holder",
    )
    holder.start()
    assert minter.entered.wait(10)
    b.clear()  # the customer logged out meanwhile
    assert _until(lambda: target.raw().hexists(name, "g"))
    target.raw().delete(name)  # evicted: tombstone, lock and all
    minter.release.set()
    holder.join()
    assert target.entry(name) is None
    late = Minter(platform, "alice")
    third = pipeline_for(platform, target.cache(namespace, KEY))
    third.load("alice", late)
    assert third.get_context().token not in (old.token, held[0])  # type: ignore[union-attr]
    assert late.calls == [False]


# -- restricted commands, forbidden scripts -----------------------------------------------------


@pytest.fixture(scope="module")
def restricted(redis_cluster: RedisClusterServer) -> RedisClusterServer:
    """The session's cluster with two more users: ``managed``, refused what managed services
    refuse, and ``noscripts``, refused scripts (as services that forbid them on sharded
    clusters do)."""
    for port in redis_cluster.ports:
        _command(port, "ACL", "SETUSER", "managed", "on", ">s3cr3t-m", "~*", "&*", "+@all")
        _command(port, "ACL", "SETUSER", "managed", *RESTRICTED.split())
        _command(port, "ACL", "SETUSER", "noscripts", "on", ">s3cr3t-n", "~*", "&*", "+@all")
        _command(port, "ACL", "SETUSER", "noscripts", "-@scripting")
    return redis_cluster


def _as(cluster: RedisClusterServer, user: str) -> str:
    return f"redis://{user}:s3cr3t-{user[0]}@127.0.0.1:{cluster.ports[0]}"


def test_a_cluster_refusing_managed_services_restricted_commands_still_shares(
    platform: FakePlatform, restricted: RedisClusterServer, namespace: str
) -> None:
    """Refused CONFIG, DEBUG, MIGRATE and every other dangerous command, the fleet still makes
    one token call, a refresh's notice still reaches the other process, and a clear too."""
    target = Target(_as(restricted, "managed"), cluster=True)
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter, front_ttl=3600)
    token = a.get_context().token  # type: ignore[union-attr]
    assert b.get_context().token == token  # type: ignore[union-attr]
    assert a.get_context(needs_refresh=True).token != token  # type: ignore[union-attr]
    assert _until(lambda: b.cached() is None)
    assert b.get_context().token == a.get_context().token  # type: ignore[union-attr]
    a.clear()
    assert _until(lambda: b.cached() is None)
    assert [c._link.is_down() for p in (a, b) if isinstance(c := p._cache, RedisContextCache)] == [
        False,
        False,
    ]
    assert minter.calls == [False, True]


def test_a_service_that_forbids_scripts_serves_each_process_alone_and_says_why(
    platform: FakePlatform,
    restricted: RedisClusterServer,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Where scripts are refused, no request fails: each process serves its customers alone
    (its own token call), with one warning per node saying the node refused the cache's scripts,
    not that it did not answer."""
    caplog.set_level(logging.WARNING, "asapp_auth")
    target = Target(_as(restricted, "noscripts"), cluster=True)
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter, retry_after=60)
    with httpx.Client() as client:
        for pipeline in (a, b, a, b):
            assert client.get(f"{platform.url}/v1/account", auth=pipeline).status_code == 200
    assert minter.calls == [False, False]
    warnings = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(warnings) == 2  # one per process, for alice's node
    assert all("scripts" in w and "did not answer" not in w for w in warnings)
    assert "s3cr3t" not in caplog.text


# -- the command set ----------------------------------------------------------------------------


class Monitor:
    """Every command the nodes on ``ports`` run (``MONITOR``), script commands marked ``lua``.

    MONITOR leaves out administrative commands (CONFIG and the like): the restricted-commands
    test above covers those."""

    _ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.lines: list[tuple[int, bool, list[bytes]]] = []
        self._socks = []
        self._threads = []
        for port in ports:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"MONITOR\r\n")
            reader = sock.makefile("rb")
            assert reader.readline() == b"+OK\r\n"
            thread = threading.Thread(target=self._read, args=(port, reader), daemon=True)
            thread.start()
            self._socks.append(sock)
            self._threads.append(thread)

    def _read(self, port: int, reader: Any) -> None:
        try:
            for line in reader:
                head, _, rest = line.partition(b"] ")
                args = [m.group(1) for m in self._ARG.finditer(rest)]
                if args:
                    self.lines.append((port, head.endswith(b" lua"), args))
        except (OSError, ValueError):
            return

    def stop(self) -> list[tuple[int, bool, list[bytes]]]:
        """Once every node has logged a marker sent after the rest: what they ran before it."""
        marker = f"asapp-auth-test-{time.monotonic_ns()}".encode()
        for port in self.ports:
            _command(port, "ECHO", marker.decode())
        assert _until(
            lambda: sum(args == [b"ECHO", marker] for _, _, args in self.lines) >= len(self.ports)
        )
        for sock in self._socks:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)
        return [line for line in self.lines if line[2][:1] != [b"ECHO"]]


@pytest.fixture
def monitored(target: Target) -> Iterator[Monitor]:
    raw = target.raw()
    if target.cluster:
        ports = [int(node.port) for node in raw.get_primaries()]
    else:
        ports = [int(target.url.rsplit(":", 1)[1].split("/")[0])]
    raw.close()
    monitor = Monitor(ports)
    try:
        yield monitor
    finally:
        for sock in monitor._socks:
            sock.close()


# The commands the cache sends, and those redis-py sends for it, all in Redis 7.2 (and Valkey).
SCRIPTS = {b"EVALSHA", b"EVAL"}
LISTENING = {b"SUBSCRIBE", b"SSUBSCRIBE"}
CLIENT_LIBRARY = {b"CLIENT", b"CLUSTER", b"COMMAND", b"PING", b"HELLO"}
IN_SCRIPTS = {b"TIME", b"HMGET", b"HSET", b"HDEL", b"PEXPIREAT", b"PERSIST"}
PUBLISHING = {b"PUBLISH", b"SPUBLISH"}


def test_the_cache_sends_redis_7_2_commands_and_each_script_touches_its_one_key(
    platform: FakePlatform, target: Target, namespace: str, monitored: Monitor
) -> None:
    """Through sharing, a refresh that renews its lock, a failed refresh, a clear and a copy
    shared back, the nodes run only the documented commands; every script names one key, the
    customer's, and every command a script runs touches that key (or publishes its notice)."""
    minter = Minter(platform, "alice")
    a, b = two_processes(platform, target, namespace, minter, front_ttl=3600, lock_ttl=0.6)
    token = a.get_context().token  # type: ignore[union-attr]
    assert b.get_context().token == token  # type: ignore[union-attr]
    minter.delay = 0.5  # past lock_ttl / 3: the lock is renewed while the provider runs
    assert a.get_context(needs_refresh=True).token != token  # type: ignore[union-attr]
    minter.delay = 0.0
    assert _until(lambda: b.cached() is None)

    def failing(needs_refresh: bool) -> AuthContext:
        raise RuntimeError("the token service is down")

    failing.cache_scope = "minter"  # type: ignore[attr-defined]
    c = pipeline_for(platform, target.cache(namespace, KEY))
    c.load("alice", failing)
    with pytest.raises(ProviderError):
        c.get_context(needs_refresh=True)  # takes the lock, lets it go
    a.clear()
    a.set_customer("alice", minter)
    a_cache = a._cache
    assert isinstance(a_cache, RedisContextCache)
    assert a.get_context() is not None
    cut_off(a_cache, 60)
    assert a.get_context(needs_refresh=True) is not None  # newer, made alone
    cut_off(a_cache, 0)
    copy = a.cached()
    assert copy is not None
    copy.expires_at = 0.0
    assert a.get_context().token == copy.context.token  # type: ignore[union-attr]
    lines = monitored.stop()
    name = key_of(a).encode()
    outside = {args[0].upper() for _, lua, args in lines if not lua}
    inside = {args[0].upper() for _, lua, args in lines if lua}
    assert outside <= SCRIPTS | LISTENING | CLIENT_LIBRARY, outside
    assert inside <= IN_SCRIPTS | PUBLISHING, inside
    scripts = [args for _, lua, args in lines if not lua and args[0].upper() in SCRIPTS]
    assert len(scripts) >= 8
    assert {(args[2], args[3]) for args in scripts} == {(b"1", name)}  # one key: alice's
    channels = {f"{namespace}:events".encode(), name + b":events"}
    for _, lua, args in lines:
        if not lua or args[0].upper() == b"TIME":
            continue
        assert args[1] in (channels if args[0].upper() in PUBLISHING else {name}), args[:2]
