"""Unit tests of the shared cache's link to a cluster (``asapp_auth._redis_link``) on a stand-in
client: which cluster errors are retried, how often, and which shard counts as down after."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ClusterDownError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from asapp_auth._redis_link import Down, RedisLink


class StandIn:
    """A cluster client whose keys starting with ``a`` live on node-a, the others on node-b;
    ``moves`` keys of node-a to node-c once told so (a failover the client has read)."""

    def __init__(self) -> None:
        self.moved = False

    def get_node_from_key(self, key: str) -> Any:
        node = "node-b" if not key.startswith("a") else "node-c" if self.moved else "node-a"
        return SimpleNamespace(name=node)

    def keyslot(self, key: str) -> int:
        return 0


def link() -> tuple[RedisLink, StandIn]:
    made = RedisLink("redis://127.0.0.1:7000", None, cluster=True, timeout=0.5, retry_after=60)
    client = StandIn()
    made._client = client
    return made, client


def failing(errors: list[BaseException]) -> tuple[Callable[[Any], str], list[int]]:
    """A command that raises each of ``errors`` in turn, then answers ``"ok"``."""
    calls: list[int] = []

    def command(client: Any) -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return command, calls


@pytest.mark.parametrize("error", [TryAgainError, ClusterDownError])
def test_brief_cluster_states_are_retried_and_then_answer(error: type[Exception]) -> None:
    """TRYAGAIN (a slot migrating) and CLUSTERDOWN (a failover) twice, then an answer: the
    command succeeds, and no shard counts as down."""
    cluster, _ = link()
    command, calls = failing([error("moment"), error("moment")])
    assert cluster.call("alice", command) == "ok"
    assert len(calls) == 3
    assert cluster.up("alice")


@pytest.mark.parametrize("error", [TryAgainError, ClusterDownError])
def test_a_brief_state_that_lasts_is_given_up_after_three_tries_for_that_shard_only(
    error: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    """A TRYAGAIN or CLUSTERDOWN that does not pass is tried three times, then the shard of the
    key (only that one) counts as down, with one warning naming it."""
    caplog.set_level(logging.WARNING, "asapp_auth")
    cluster, _ = link()
    command, calls = failing([error("lasting")] * 10)
    with pytest.raises(Down):
        cluster.call("alice", command)
    assert len(calls) == 3
    assert not cluster.up("alice")
    assert not cluster.up("anna")  # the same node
    assert cluster.up("bob")  # another node's customers stay shared
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "node-a" in warnings[0]


def test_a_connection_error_is_retried_only_when_the_slot_moved() -> None:
    """A node that does not answer marks its shard down at once, unless the client has found
    the slot on another node meanwhile (a replica promoted): then that node is asked."""
    cluster, client = link()
    command, calls = failing([RedisConnectionError("refused")])
    with pytest.raises(Down):
        cluster.call("bob", command)
    assert len(calls) == 1

    def moving(what: Any) -> str:
        if not client.moved:
            client.moved = True
            raise RedisConnectionError("refused")
        return "ok"

    assert cluster.call("alice", moving) == "ok"
    assert cluster.up("alice")


def test_a_refused_command_is_not_retried() -> None:
    """An error the node answers (not a passing cluster state) marks the shard down at once."""
    cluster, _ = link()
    command, calls = failing([ResponseError("NOPERM no permissions")] * 3)
    with pytest.raises(Down):
        cluster.call("alice", command)
    assert len(calls) == 1
