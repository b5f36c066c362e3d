"""Throwaway Redis servers on 127.0.0.1 for tests: one ``redis-server``, or a Redis Cluster.

Both need Debian's ``redis-server`` package (``redis-server`` and ``redis-cli``). Neither keeps
anything on disk past ``close``. They speak RESP over plain sockets here, so that they need no
redis-py.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["RedisClusterServer", "RedisServer"]


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _cluster_ports(count: int, avoid: list[int] | None = None) -> list[int]:
    """Ports for cluster nodes: each node also listens on its port + 10000 (the cluster bus),
    so both must be free and the port at most 55535; none of ``avoid``, nor their bus ports."""
    ports: list[int] = []
    taken = list(avoid or [])
    while len(ports) < count:
        port = random.randrange(20_000, 55_535)  # noqa: S311 - not for secrets
        near = ports + taken
        if port in near or port + 10_000 in near or port - 10_000 in near:
            continue
        try:
            with socket.socket() as one, socket.socket() as bus:
                one.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        ports.append(port)
    return ports


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (apt-get install redis-server)")
    return found


def _read(reply: BinaryIO) -> object:
    """One RESP2 value: bytes for strings and errors (errors raise), int, list or None."""
    line = reply.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the connection closed mid-answer")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisReplyError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reply.read(size + 2)[:-2]
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(reply) for _ in range(size)]
    raise ConnectionError(f"not a RESP answer: {line[:20]!r}")


def _command(port: int, *args: str, timeout: float = 2.0) -> Any:
    """One command to the server on ``port``; its answer (see ``_read``)."""
    out = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(out)
        with conn.makefile("rb") as reply:
            return _read(reply)


class RedisReplyError(Exception):
    """The server answered a command of these helpers with an error."""


def _answers(port: int) -> bool:
    try:
        return bool(_command(port, "PING", timeout=0.2) == b"PONG")
    except (OSError, RedisReplyError):
        return False


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 without persistence; ``stop`` and ``start`` again keep
    its port, as a restarted Redis would. Needs the ``redis-server`` program (Debian's
    ``redis-server`` package, for instance)."""

    def __init__(self) -> None:
        self.port: int = _free_ports(1)[0]
        self.folder = Path(tempfile.mkdtemp(prefix="asapp-auth-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        quiet = subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=quiet, stderr=quiet)  # noqa: S603 - our argv
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterServer:
    """A Redis Cluster on 127.0.0.1: ``primaries`` shards of one primary and ``replicas``
    replicas each, made with ``redis-cli --cluster create``, without persistence.

    ``node_timeout`` (ms) is how soon a silent node counts as failed (then its replica takes
    over); with ``full_coverage=False`` the other shards keep answering while a shard is down.
    ``kill`` and ``restart`` stop and start one node on its port; ``move_slot`` reshards one slot
    with its keys, as ``redis-cli --cluster reshard`` does, one step at a time if asked.
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 0,
        *,
        node_timeout: int = 1000,
        full_coverage: bool = False,
    ) -> None:
        if primaries < 3:
            raise ValueError("Redis Cluster needs at least 3 primaries")
        self.primaries, self.replicas = primaries, replicas
        self.ports: list[int] = _cluster_ports(primaries * (1 + replicas))
        self.node_timeout, self.full_coverage = node_timeout, full_coverage
        self.folder = Path(tempfile.mkdtemp(prefix="asapp-auth-redis-cluster-"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A URL of one node: the cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}" for port in self.ports]

    def _launch(self, port: int) -> None:
        folder = self.folder / str(port)
        folder.mkdir(exist_ok=True)
        args = [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(self.node_timeout)]
        args += ["--cluster-require-full-coverage", "yes" if self.full_coverage else "no"]
        # A replica whose primary died takes over however long it was cut off (tests kill
        # primaries at any moment).
        args += ["--cluster-replica-validity-factor", "0"]
        quiet = subprocess.DEVNULL
        self.processes[port] = subprocess.Popen(args, stdout=quiet, stderr=quiet)  # noqa: S603

    def _wait(self, what: str, condition: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if callable(condition) and condition():
                    return
            except (OSError, RedisReplyError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"Redis Cluster on ports {self.ports}: {what} within {timeout:g}s")

    def _launch_all(self, timeout: float) -> None:
        """Start every node; one that exits at once (its port or bus port taken since the ports
        were chosen: another program's connection, say) is started again on other ports."""
        for port in self.ports:
            self._launch(port)
        for _ in range(5):
            self._wait("nodes did not start", self._started, timeout)
            dead = [port for port in self.ports if not self.running(port)]
            if not dead:
                return
            fresh = iter(_cluster_ports(len(dead), avoid=self.ports))
            for port in dead:
                self.processes.pop(port, None)
                new = next(fresh)
                self.ports[self.ports.index(port)] = new
                self._launch(new)
        raise RuntimeError(f"Redis Cluster on ports {self.ports}: nodes kept failing to start")

    def _started(self) -> bool:
        """Every node answers, or some node has exited (to be started on other ports)."""
        if any(not self.running(port) for port in self.ports):
            return True
        return all(map(_answers, self.ports))

    def start(self, timeout: float = 30.0) -> RedisClusterServer:
        try:
            self._launch_all(timeout)
            create = [_binary("redis-cli"), "--cluster", "create"]
            create += [f"127.0.0.1:{port}" for port in self.ports]
            create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            subprocess.run(  # noqa: S603 - our argv
                create, check=True, capture_output=True, timeout=timeout
            )
            self.wait_ok(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def info(self, port: int) -> dict[str, str]:
        """``CLUSTER INFO`` of one node."""
        text = _command(port, "CLUSTER", "INFO").decode()
        return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)

    def nodes(self, port: int | None = None) -> list[dict[str, str]]:
        """``CLUSTER NODES`` as seen by one node (the first running one by default): each
        with ``id``, ``port``, ``flags``, ``primary`` (its primary's id, or ``-``), ``slots``."""
        port = port if port is not None else next(p for p in self.ports if self.running(p))
        seen = []
        for line in _command(port, "CLUSTER", "NODES").decode().splitlines():
            parts = line.split()
            seen.append(
                {
                    "id": parts[0],
                    "port": parts[1].split("@")[0].rsplit(":", 1)[1],
                    "flags": parts[2],
                    "primary": parts[3],
                    "slots": " ".join(parts[8:]),
                }
            )
        return seen

    def running(self, port: int) -> bool:
        process = self.processes.get(port)
        return process is not None and process.poll() is None

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node says the cluster is ok and knows all 16384 slots."""

        def ok() -> bool:
            for port in self.ports:
                if not self.running(port):
                    continue
                info = self.info(port)
                if info.get("cluster_state") != "ok":
                    return False
                if not self.full_coverage:
                    continue
                if info.get("cluster_slots_ok") != "16384":
                    return False
            return all(
                "fail" not in node["flags"] or not self.running(int(node["port"]))
                for node in self.nodes()
            )

        self._wait("the cluster is not ok", ok, timeout)

    def wait_primary(self, port: int, timeout: float = 30.0) -> None:
        """Wait until every running node sees the node on ``port`` as a primary serving slots
        (a replica promoted after its primary failed)."""

        def promoted() -> bool:
            for other in self.ports:
                if not self.running(other):
                    continue
                node = next(n for n in self.nodes(other) if int(n["port"]) == port)
                if "master" not in node["flags"] or not node["slots"]:
                    return False
            return True

        self._wait(f"the node on port {port} was not promoted", promoted, timeout)
        self.wait_ok(timeout)

    def primary_of(self, slot: int) -> int:
        """The port of the primary serving ``slot``, as the first running node sees it."""
        for node in self.nodes():
            if "master" not in node["flags"] or "fail" in node["flags"]:
                continue
            for span in node["slots"].split():
                if span.startswith("["):
                    continue
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(node["port"])
        raise LookupError(f"no primary serves slot {slot}")

    def replica_of(self, port: int) -> int:
        """The port of a replica of the primary on ``port``."""
        nodes = self.nodes()
        primary = next(n["id"] for n in nodes if int(n["port"]) == port)
        return next(int(n["port"]) for n in nodes if n["primary"] == primary)

    def slot_of(self, key: str) -> int:
        return int(_command(self.ports[0], "CLUSTER", "KEYSLOT", key))

    def node_id(self, port: int) -> str:
        return str(_command(port, "CLUSTER", "MYID").decode())

    def move_slot(
        self,
        slot: int,
        to_port: int,
        *,
        before_keys: Callable[[], object] | None = None,
        after_keys: Callable[[], object] | None = None,
    ) -> None:
        """Reshard ``slot`` to the primary on ``to_port`` with its keys, as ``redis-cli --cluster
        reshard`` does: SETSLOT IMPORTING and MIGRATING, MIGRATE the keys, then SETSLOT NODE on
        every primary. ``before_keys`` is called once the slot is marked migrating (its keys
        still on the source), ``after_keys`` once they are on the target (reached by ``ASK``),
        before ownership changes."""
        source = self.primary_of(slot)
        if source == to_port:
            return
        target_id, source_id = self.node_id(to_port), self.node_id(source)
        _command(to_port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        _command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        if before_keys is not None:
            before_keys()
        while True:
            keys = _command(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100")
            if not keys:
                break
            args = ["MIGRATE", "127.0.0.1", str(to_port), "", "0", "5000", "REPLACE", "KEYS"]
            _command(source, *args, *(k.decode() for k in keys), timeout=10)
        if after_keys is not None:
            after_keys()
        for port in self.ports:
            if self.running(port) and "master" in self._flags(port):
                _command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)

    def set_full_coverage(self, full: bool) -> None:
        """Whether every shard refuses commands (CLUSTERDOWN) while one shard is down."""
        self.full_coverage = full
        for port in self.ports:
            if self.running(port):
                value = "yes" if full else "no"
                _command(port, "CONFIG", "SET", "cluster-require-full-coverage", value)

    def _flags(self, port: int) -> str:
        myself = next(n for n in self.nodes(port) if "myself" in n["flags"])
        return myself["flags"]

    def kill(self, port: int) -> None:
        """Stop one node at once (SIGKILL), as a crashed host would."""
        process = self.processes.pop(port, None)
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a stopped node again on its port, with the cluster configuration it had."""
        self._launch(port)
        self._wait("the node did not start", lambda: _answers(port), timeout)

    def close(self) -> None:
        processes, self.processes = list(self.processes.values()), {}
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
