"""The listener: notices of new versions from other processes, read by one thread per cache.

On one server, and on a cluster whose nodes lack sharded pub/sub (before Redis 7.0), every
notice goes to the namespace's channel (``<namespace>:events``; a cluster relays classic
messages to every node). On a Redis or Valkey 7 cluster each customer has a sharded channel in
its key's slot (``SSUBSCRIBE``/``SPUBLISH``), subscribed on the node that serves that slot;
when a slot moves (the node then ends those subscriptions) or a node fails, the listener reads
the cluster's layout again and subscribes on the new owner. A notice sent meanwhile may be lost:
``front_ttl`` bounds how long a process then serves a replaced copy.

The thread owns its connections (plain redis-py connections, one per node it listens to) and
waits on all of them at once; other threads only ask for channels and wake it.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import MovedError

from ._redis_keys import channel_of
from ._redis_link import Down, RedisLink

log = logging.getLogger("asapp_auth.redis_cache")

_REFRESH_EVERY = 0.5  # at most this often, the cluster's layout is read again
_CHECK_EVERY = 5.0  # subscriptions checked against the layout, in case a move went unseen


@dataclass(eq=False)
class _Sub:
    """One connection to one node, and the channels asked of it."""

    node: str
    conn: Any
    channels: set[str] = field(default_factory=set)


def _listening(options: dict[str, Any]) -> dict[str, Any]:
    """A pool's connection settings for a connection that only listens: no health-check PING
    (it would read a message as its answer) and RESP2 messages (arrays we parse here)."""
    # Maintenance notifications need RESP3; redis-py refuses them over RESP2.
    options = {k: v for k, v in options.items() if not k.startswith("maint_notifications")}
    return {**options, "health_check_interval": 0, "protocol": 2}


class Notices:
    """Subscriptions for one cache: ``want(name)`` before relying on a customer's notices."""

    def __init__(
        self,
        link: RedisLink,
        namespace: str,
        on_notice: Callable[[bytes], None],
        closed: threading.Event,
        retry_after: float,
    ) -> None:
        self._link, self._on_notice, self._closed = link, on_notice, closed
        self._classic = f"{namespace}:events"
        self._pause = max(0.1, min(retry_after, 1.0))
        self._lock = threading.Lock()
        self._ready: dict[str, threading.Event] = {}
        self._queued: set[str] = set()
        self._thread: threading.Thread | None = None
        # Made with the thread, closed by it: wakes it from waiting on Redis's sockets.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    @property
    def sharded(self) -> bool:
        return self._link.cluster and self._link.sharded

    def publish_to(self, name: str) -> tuple[str, str]:
        """The command and channel a script publishes a notice of ``name`` with."""
        if self.sharded:
            return "SPUBLISH", channel_of(name)
        return "PUBLISH", self._classic

    def want(self, name: str) -> threading.Event:
        """Listen for ``name``'s notices; the event is set once Redis confirmed it (or the
        listener met trouble: notices are then made up for by ``front_ttl``)."""
        channel = channel_of(name) if self.sharded else self._classic
        with self._lock:
            ready = self._ready.get(channel)
            if ready is None:
                ready = self._ready[channel] = threading.Event()
                self._queued.add(channel)
                fresh = True
            else:
                fresh = False
            if self._thread is None:
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="asapp-auth-redis-events"
                )
                self._thread.start()
        if fresh:
            self._wake()
        return ready

    def forget_all(self) -> None:
        """Stop listening for every customer (the cache forgot which names it knows)."""
        if not self.sharded:
            return
        with self._lock:
            self._ready.clear()
            self._queued.clear()
            self._reset = True
        self._wake()

    def _wake(self) -> None:
        wake = self._wake_w
        if wake is None:
            return
        try:
            wake.send(b"x")
        except OSError:  # full (the thread is behind anyway) or closed
            pass

    def close(self) -> None:
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    # -- the thread ---------------------------------------------------------------------------

    _reset = False

    def _run(self) -> None:
        subs: dict[str, _Sub] = {}
        self._last_refresh = self._last_check = 0.0
        try:
            while not self._closed.is_set():
                try:
                    self._step(subs)
                except Down:
                    self._settle_all()
                    self._closed.wait(self._pause)
                except Exception as exc:  # never let the listener die: listen again shortly
                    log.debug("notices from Redis interrupted (%s); listening again", exc)
                    self._drop_all(subs)
                    self._settle_all()
                    self._closed.wait(self._pause)
        finally:
            self._drop_all(subs)
            for wake in (self._wake_r, self._wake_w):
                if wake is not None:
                    wake.close()

    def _step(self, subs: dict[str, _Sub]) -> None:
        client = self._link.client()
        if self._reset:
            self._reset = False
            self._drop_all(subs)
        with self._lock:
            queued, self._queued = self._queued, set()
        failed: set[str] = set()
        for channel in sorted(queued):
            if not self._subscribe(client, subs, channel, failed):
                with self._lock:
                    if channel in self._ready:
                        self._queued.add(channel)
        if failed:
            self._settle_all()
            self._refresh()
        now = time.monotonic()
        if self.sharded and now - self._last_check > _CHECK_EVERY:
            self._last_check = now
            self._recheck(client, subs)
        with self._lock:
            pending = bool(self._queued)
        self._wait(subs, self._pause if pending else 1.0)
        for sub in list(subs.values()):
            self._drain(sub, subs)

    def _node_of(self, client: Any, channel: str) -> tuple[str, Any]:
        """The node to listen on for ``channel``, and the connection pool to it."""
        if not self._link.cluster:
            return "", client.connection_pool
        if self.sharded:
            node = client.get_node_from_key(channel)
        else:
            # Classic notices reach every node of a cluster: any primary will do, another one
            # after a failure.
            node = random.choice(client.get_primaries())  # noqa: S311 - not for secrets
        return str(node.name), client.get_redis_connection(node).connection_pool

    def _subscribe(
        self, client: Any, subs: dict[str, _Sub], channel: str, failed: set[str]
    ) -> bool:
        try:
            node, pool = self._node_of(client, channel)
        except Exception:  # a slot not covered right now
            failed.add(channel)
            return False
        if node in failed:
            return False
        sub = subs.get(node)
        try:
            if sub is None:
                conn = pool.connection_class(**_listening(pool.connection_kwargs))
                conn.connect()
                sub = subs[node] = _Sub(node, conn)
            command = "SSUBSCRIBE" if self.sharded else "SUBSCRIBE"
            sub.conn.send_command(command, channel)
        except Exception as exc:
            log.debug("could not listen on %s (%s); trying again shortly", node or "Redis", exc)
            failed.add(node)
            if sub is not None:
                self._drop(sub, subs)
            return False
        sub.channels.add(channel)
        return True

    def _wait(self, subs: dict[str, _Sub], timeout: float) -> None:
        socks = [sub.conn._sock for sub in subs.values() if sub.conn._sock is not None]
        wake = self._wake_r
        assert wake is not None
        try:
            select.select([wake, *socks], [], [], timeout)
        except (OSError, ValueError):  # a socket closed under us: the drain finds out
            return
        try:
            while wake.recv(4096):
                pass
        except OSError:
            pass

    def _drain(self, sub: _Sub, subs: dict[str, _Sub]) -> None:
        try:
            while sub.conn.can_read(timeout=0):
                self._handle(sub, sub.conn.read_response())
        except MovedError as exc:
            # Subscribed where the slot no longer is: ask again once the layout is read again.
            moved = {c for c in sub.channels if self._link_slot(c) == exc.slot_id}
            sub.channels -= moved
            self._requeue(moved)
            self._refresh()
        except Exception as exc:
            log.debug("notices from %s interrupted (%s); listening again", sub.node or "Redis", exc)
            self._drop(sub, subs)
            self._refresh()

    def _handle(self, sub: _Sub, message: Any) -> None:
        if not isinstance(message, list) or len(message) < 3:
            return
        kind = message[0]
        channel = message[1].decode() if isinstance(message[1], bytes) else str(message[1])
        if kind in (b"message", b"smessage"):
            data = message[2]
            if isinstance(data, bytes):
                self._on_notice(data)
        elif kind in (b"subscribe", b"ssubscribe"):
            with self._lock:
                ready = self._ready.get(channel)
            if ready is not None:
                ready.set()
        elif kind == b"sunsubscribe":
            # The node gave the slot away (resharding, or it became a replica).
            sub.channels.discard(channel)
            self._requeue({channel})
            self._refresh()

    def _recheck(self, client: Any, subs: dict[str, _Sub]) -> None:
        for sub in list(subs.values()):
            for channel in list(sub.channels):
                try:
                    node = str(client.get_node_from_key(channel).name)
                except Exception:
                    node = ""
                if node != sub.node:
                    self._drop(sub, subs)
                    break

    def _link_slot(self, channel: str) -> int:
        client = self._link.client()
        return int(client.keyslot(channel))

    def _requeue(self, channels: set[str]) -> None:
        with self._lock:
            self._queued.update(c for c in channels if c in self._ready)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_refresh < _REFRESH_EVERY:
            return
        self._last_refresh = now
        try:
            self._link.refresh()
        except Exception as exc:  # the next round tries again
            log.debug("could not read the Redis Cluster's layout (%s)", exc)

    def _drop(self, sub: _Sub, subs: dict[str, _Sub]) -> None:
        subs.pop(sub.node, None)
        self._requeue(sub.channels)
        try:
            sub.conn.disconnect()
        except Exception:  # noqa: S110 - closing a broken connection
            pass

    def _drop_all(self, subs: dict[str, _Sub]) -> None:
        for sub in list(subs.values()):
            self._drop(sub, subs)

    def _settle_all(self) -> None:
        """Nobody waits on the listener while it is in trouble."""
        with self._lock:
            for ready in self._ready.values():
                ready.set()
