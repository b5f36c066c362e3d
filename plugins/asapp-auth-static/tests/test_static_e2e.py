"""End to end: a pipeline configured with the static plugin, an httpx.Client, and a server on
127.0.0.1 that accepts only the current token."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
from static_helpers import BearerServer

from asapp_auth.pipeline import AuthPipeline


def test_refresh_rereads_a_rotated_token_file(
    bearer_server: Callable[[set[str]], BearerServer],
    new_token: Callable[[], str],
    tmp_path: Path,
) -> None:
    """After the platform rotates the token file, a 401 makes the pipeline read the new token."""
    old, new = new_token(), new_token()
    path = tmp_path / "token"
    path.write_text(old + "\n")
    server = bearer_server({old})
    pipeline = AuthPipeline(origins=[server.url], plugins={"static": {"token_file": str(path)}})
    pipeline.load(customer_id="alice")
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{server.url}/me").status_code == 200
        # The platform rotates the mounted secret: the old token is no longer accepted.
        staging = tmp_path / "token.tmp"
        staging.write_text(new + "\n")
        os.replace(staging, path)
        server.valid = {new}
        response = client.get(f"{server.url}/me")
    assert response.status_code == 200
    assert server.seen == [old, old, new]


def test_template_header_reaches_the_server(
    bearer_server: Callable[[set[str]], BearerServer], new_token: Callable[[], str]
) -> None:
    """A template that puts the token in a header of its own sends it there."""
    token = new_token()
    server = bearer_server({token})
    settings = {"token": token, "template": {"Auth": {"Headers": {"X-Api-Key": "{token}"}}}}
    pipeline = AuthPipeline(origins=[server.url], plugins={"static": settings})
    pipeline.load(customer_id="alice")
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{server.url}/me").status_code == 200
    assert "Authorization" not in server.headers[0]
    assert server.headers[0]["X-Api-Key"] == token


def test_installed_is_not_active() -> None:
    """A pipeline not configured with static does not register it, though it is installed."""
    pipeline = AuthPipeline(origins=["http://127.0.0.1:9"])
    assert pipeline.plugin_manager.get_plugin("static") is None
