"""The shared cache's settings: sealing keys, the configuration file, URLs (one server or a
cluster node), clients given ready-made, and keys made by ``asapp-auth keygen``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis_helpers import Minter, Target, cut_off

from asapp_auth import AuthPipeline
from asapp_auth.errors import ConfigurationError
from asapp_auth.redis_cache import RedisContextCache
from asapp_auth.sealing import KeyRing, generate_key
from asapp_auth.testing import FakePlatform, RedisClusterServer

KEY = generate_key()


def pipeline_for(platform: FakePlatform, cache: RedisContextCache, **options: Any) -> AuthPipeline:
    return AuthPipeline([platform.origin], cache=cache, **options)


# -- sealing ------------------------------------------------------------------------------------


def test_a_sealed_value_opens_only_with_its_binding_and_a_key_of_the_ring() -> None:
    old, new = generate_key(), generate_key()
    sealed = KeyRing([old]).seal(b"s3cr3t context", b"ns:alice")
    assert b"s3cr3t" not in sealed
    rotated = KeyRing([new, old])
    assert rotated.open(sealed, b"ns:alice") == b"s3cr3t context"
    assert rotated.open(rotated.seal(b"x", b"b"), b"b") == b"x"
    from asapp_auth.sealing import UnsealError

    with pytest.raises(UnsealError, match="stored elsewhere"):
        rotated.open(sealed, b"ns:bob")
    with pytest.raises(UnsealError, match="not in this ring"):
        KeyRing([new]).open(sealed, b"ns:alice")
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(UnsealError):
        rotated.open(bytes(tampered), b"ns:alice")
    with pytest.raises(UnsealError):
        rotated.open(b"short", b"ns:alice")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "at least one key"),
        (["not-a-key"], "32-byte key"),
        ([b"short"], "32 bytes"),
        (["env:ASAPP_AUTH_TEST_MISSING_KEY"], "ASAPP_AUTH_TEST_MISSING_KEY"),
        ([KEY, KEY], "same key twice"),
    ],
)
def test_bad_keys_fail_at_configuration(keys: list[Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        KeyRing(keys)
    assert KEY not in str(caught.value)


def test_keys_come_from_env_and_file_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = generate_key(), bytes(range(32)).hex()
    monkeypatch.setenv("CACHE_KEY", first)
    (tmp_path / "key").write_text(second + "\n")
    ring = KeyRing(["env:CACHE_KEY", f"file:{tmp_path / 'key'}"])
    assert len(ring) == 2
    assert first not in repr(ring)
    hex_ring = KeyRing([f"file:{tmp_path / 'key'}"])
    assert KeyRing([bytes(range(32))]).open(hex_ring.seal(b"v", b"k"), b"k") == b"v"
    assert ring.open(hex_ring.seal(b"v", b"k"), b"k") == b"v"  # the second key opens too


def test_a_redis_cache_from_the_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Target, namespace: str
) -> None:
    """``[cache]`` with ``backend = "redis"`` (and ``cluster = true`` for a cluster) builds the
    shared cache, which then serves a fleet."""
    monkeypatch.setenv("ASAPP_AUTH_CACHE_KEY", KEY)
    config = tmp_path / "asapp-auth.toml"
    config.write_text(
        'origins = ["https://api.chat.example"]\n'
        "[cache]\n"
        'backend = "redis"\n'
        f'url = "{target.url}"\n'
        f'namespace = "{namespace}"\n'
        'keys = ["env:ASAPP_AUTH_CACHE_KEY"]\n'
        "front_ttl = 2\n"
        "lock_ttl = 20\n"
        f"cluster = {'true' if target.cluster else 'false'}\n"
    )
    pipeline = AuthPipeline.from_config(config)
    assert isinstance(pipeline._cache, RedisContextCache)
    assert "front_ttl=2" in repr(pipeline._cache)
    assert (", cluster" in repr(pipeline._cache)) is target.cluster
    with FakePlatform() as platform:
        minter = Minter(platform, "alice")
        served = AuthPipeline([platform.origin], cache=pipeline._cache)
        served.load("alice", minter)
        assert served.get_context() is not None
    assert target.has_field(namespace, "v")  # shared, not served alone


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (['backend = "redis"', 'keys = ["env:K"]'], "cache.url: required"),
        (['backend = "redis"', 'url = "redis://127.0.0.1:1"'], "cache.keys: required"),
        (['backend = "memcached"'], 'cache.backend: expected "memory" or "redis"'),
        (['url = "redis://127.0.0.1:1"'], 'only with backend = "redis"'),
        (
            ['backend = "redis"', 'url = "redis://127.0.0.1:1"', 'keys = ["env:NOPE_NOT_SET"]'],
            "NOPE_NOT_SET",
        ),
        (
            ['backend = "redis"', 'url = "redis://127.0.0.1:1"', 'keys = "k"'],
            "cache.keys: expected a list",
        ),
        (['backend = "redis"', 'url = "http://x"', 'keys = ["env:K"]'], "redis://"),
        (
            [
                'backend = "redis"',
                'url = "unix:///run/redis.sock"',
                'keys = ["env:K"]',
                "cluster = true",
            ],
            "Redis Cluster nodes are reached over TCP",
        ),
        (
            ['backend = "redis"', 'url = "redis://h:7000/3"', 'keys = ["env:K"]', "cluster = true"],
            "database 0 only",
        ),
        (
            ['backend = "redis"', 'url = "redis://h"', 'keys = ["env:K"]', 'cluster = "yes"'],
            "cluster: expected true or false",
        ),
        (["cluster = true"], 'only with backend = "redis"'),
    ],
)
def test_redis_cache_settings_are_checked_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], problem: str
) -> None:
    monkeypatch.setenv("K", KEY)
    config = tmp_path / "asapp-auth.toml"
    config.write_text('origins = ["https://api.chat.example"]\n[cache]\n' + "\n".join(lines))
    with pytest.raises(ConfigurationError, match=problem) as caught:
        AuthPipeline.from_config(config)
    assert str(config) in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["redis://user:s3cr3t-pass@127.0.0.1:1/0", "redis://127.0.0.1:1/0?password=s3cr3t"]
)
def test_the_url_password_is_never_shown(url: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisContextCache(url, keys=[KEY], namespace="shown", retry_after=60)
    assert repr(cache) == "RedisContextCache(redis://127.0.0.1:1/0, namespace='shown', " + (
        "front_ttl=5, entries=0)"
    )
    with FakePlatform() as platform:
        pipeline = pipeline_for(platform, cache)
        pipeline.load("alice", Minter(platform, "alice"))
        assert pipeline.get_context() is not None  # Redis is down: served alone
    assert "did not answer" in caplog.text
    assert "s3cr3t" not in caplog.text
    with pytest.raises(ConfigurationError) as caught:
        RedisContextCache("redis:/user:s3cr3t@host", keys=[KEY])
    assert "s3cr3t" not in str(caught.value)


def test_a_client_that_decodes_responses_is_refused() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisContextCache(keys=[KEY], client=client)


def test_keygen_makes_keys_the_ring_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asapp_auth.cli import main

    assert main(["keygen"]) == 0
    printed = capsys.readouterr().out.strip()
    assert len(KeyRing([printed])) == 1
    out = tmp_path / "cache.key"
    assert main(["keygen", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert out.stat().st_mode & 0o777 == 0o600
    key = out.read_text().strip()
    assert key not in said
    assert len(KeyRing([f"file:{out}"])) == 1
    assert main(["keygen", "--out", str(out)]) == 2  # never overwrites a key


# -- Redis Cluster ------------------------------------------------------------------------------


def test_a_cluster_cache_connects_on_first_use_and_shares_once_the_cluster_answers(
    platform: FakePlatform, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``cluster=True`` makes no client until a request needs one: a cluster not up yet costs a
    warning and a request served alone; once it answers, that context is shared and the
    process listens for other processes' notices."""
    cluster = RedisClusterServer()  # not started: nothing listens on its ports
    try:
        cache = RedisContextCache(
            cluster.url,
            keys=[KEY],
            namespace=namespace,
            cluster=True,
            retry_after=60,
            front_ttl=3600,
        )
        assert cache._link._client is None  # made without connecting
        pipeline = pipeline_for(platform, cache)
        minter = Minter(platform, "alice")
        pipeline.load("alice", minter)
        token = pipeline.get_context().token  # type: ignore[union-attr]
        assert "no node of the Redis Cluster" in caplog.text
        cluster.start()
        cut_off(cache, 0)  # as when retry_after is over
        copy = pipeline.cached()
        assert copy is not None
        copy.expires_at = 0.0  # the front copy lapses: the next request reads the cluster
        assert pipeline.get_context().token == token  # type: ignore[union-attr]
        other = pipeline_for(
            platform, RedisContextCache(cluster.url, keys=[KEY], namespace=namespace, cluster=True)
        )
        other.load("alice", minter)
        assert other.get_context().token == token  # type: ignore[union-attr]
        assert minter.calls == [False]
        assert "answers again" in caplog.text
        # Listening too: another process's refresh drops this one's copy.
        assert other.get_context(needs_refresh=True).token != token  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while pipeline.cached() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pipeline.cached() is None
        assert minter.calls == [False, True]
        cache.close()
    finally:
        cluster.close()


def test_a_given_cluster_client_is_used_and_stays_the_callers(
    platform: FakePlatform, redis_cluster: RedisClusterServer, namespace: str
) -> None:
    """A ``RedisCluster`` given as ``client`` makes a cluster cache without ``cluster=True``."""
    client = RedisCluster.from_url(redis_cluster.url)
    cache = RedisContextCache(keys=[KEY], namespace=namespace, client=client)
    assert "cluster" in repr(cache)
    pipeline = pipeline_for(platform, cache)
    pipeline.load("alice", Minter(platform, "alice"))
    assert pipeline.get_context() is not None
    assert Target(redis_cluster.url, cluster=True).has_field(namespace, "v")
    cache.close()
    assert client.ping()  # not closed: it is the caller's


def test_cluster_clients_that_do_not_fit_are_refused(redis_cluster: RedisClusterServer) -> None:
    """``cluster=True`` with a plain client, or a cluster client that decodes responses, is a
    configuration error naming what to give instead."""
    with pytest.raises(ConfigurationError, match=r"not a redis\.cluster\.RedisCluster"):
        RedisContextCache(keys=[KEY], cluster=True, client=redis.Redis(port=1))
    decoding = RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisContextCache(keys=[KEY], client=decoding)


def test_a_namespace_with_braces_is_refused() -> None:
    """Braces in a namespace would make it every key's hash tag: one shard for the fleet."""
    with pytest.raises(ConfigurationError, match="braces"):
        RedisContextCache("redis://127.0.0.1:1", keys=[KEY], namespace="{fleet}")
