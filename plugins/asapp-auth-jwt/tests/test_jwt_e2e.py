"""End to end: a pipeline configured with the jwt plugin, an httpx.Client, and a server on
127.0.0.1 that verifies each token with the JWKS the plugin publishes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asapp_auth_jwt import JWTProvider
from cryptography.hazmat.primitives import serialization
from jwt_helpers import JwksServer, key_for

from asapp_auth.pipeline import AuthPipeline

ISSUER = "https://company.example"
AUDIENCE = "https://platform.example"


def _pem_file(tmp_path: Path, algorithm: str) -> str:
    path = tmp_path / f"{algorithm}.pem"
    path.write_bytes(
        key_for(algorithm).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def _pipeline(server: JwksServer | None, settings: dict[str, Any]) -> AuthPipeline:
    origin = server.url if server is not None else "http://127.0.0.1:9"
    pipeline = AuthPipeline(origins=[origin], plugins={"jwt": settings})
    pipeline.load(customer_id="alice")
    return pipeline


def _provider(pipeline: AuthPipeline) -> JWTProvider:
    plugin = pipeline.plugin_manager.get_plugin("jwt")
    assert isinstance(plugin, JWTProvider)
    return plugin


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256", "PS256"])
def test_server_verifies_the_token_with_the_published_jwks(
    jwks_server: Callable[..., JwksServer], tmp_path: Path, algorithm: str
) -> None:
    """A request through the pipeline carries a JWT the server verifies with the plugin's JWKS."""
    settings = {
        "keys": [{"pem": _pem_file(tmp_path, algorithm), "kid": "k1", "algorithm": algorithm}],
        "issuer": ISSUER,
        "audience": AUDIENCE,
    }
    pipeline = AuthPipeline(origins=["http://127.0.0.1:9"], plugins={"jwt": settings})
    server = jwks_server(_provider(pipeline).jwks(), time.time, issuer=ISSUER, audience=AUDIENCE)
    pipeline = _pipeline(server, settings)
    with httpx.Client(auth=pipeline) as client:
        first = client.get(f"{server.url}/me")
        second = client.get(f"{server.url}/me")
    assert (first.status_code, first.json()) == (200, {"sub": "alice"})
    assert second.status_code == 200
    assert len(set(server.seen_tokens)) == 1  # the context is cached until it expires
    assert server.rejected == []


def test_rejected_expired_token_forces_a_new_mint(
    jwks_server: Callable[..., JwksServer], tmp_path: Path
) -> None:
    """When the server's clock passes exp and it answers 401, the pipeline gets a new token."""
    clock = {"now": time.time()}
    settings = {
        "keys": [_pem_file(tmp_path, "ES256")],
        "lifetime": 300,
        "clock": lambda: clock["now"],
    }
    pipeline = _pipeline(None, settings)
    server = jwks_server(_provider(pipeline).jwks(), lambda: clock["now"])
    pipeline = _pipeline(server, settings)
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{server.url}/me").status_code == 200
        clock["now"] += 301  # both sides move past exp
        response = client.get(f"{server.url}/me")
    assert response.status_code == 200
    assert server.rejected == ["ExpiredSignatureError"]
    assert len(server.seen_tokens) == 3
    first, rejected, fresh = server.seen_tokens
    assert first == rejected
    assert fresh != first
    assert server.accepted[1]["exp"] == server.accepted[0]["exp"] + 301


def test_context_expiry_forces_a_new_mint_without_a_rejection(
    jwks_server: Callable[..., JwksServer], tmp_path: Path
) -> None:
    """A context that reaches its token's exp is not sent again: the next request mints anew."""
    lifetime = 300
    # The plugin's clock runs behind, so each token expires 0.2 to 1.2 s from now (iat is whole
    # seconds).
    settings = {
        "keys": [_pem_file(tmp_path, "EdDSA")],
        "lifetime": lifetime,
        "clock": lambda: time.time() - lifetime + 1.2,
    }
    pipeline = _pipeline(None, settings)
    server = jwks_server(_provider(pipeline).jwks(), time.time)
    pipeline = _pipeline(server, settings)
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{server.url}/me").status_code == 200
        time.sleep(max(0.0, server.accepted[0]["exp"] - time.time()) + 0.05)
        assert client.get(f"{server.url}/me").status_code == 200
    assert server.rejected == []
    assert len(set(server.seen_tokens)) == 2


def test_installed_is_not_active(jwks_server: Callable[..., JwksServer]) -> None:
    """A pipeline not configured with jwt does not register it, though it is installed."""
    pipeline = AuthPipeline(origins=["http://127.0.0.1:9"])
    assert pipeline.plugin_manager.get_plugin("jwt") is None
    hook = pipeline.plugin_manager.hook.provide_context
    names = [impl.plugin_name for impl in hook.get_hookimpls()]
    assert "jwt" not in names
