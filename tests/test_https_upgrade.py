"""The one redirect on which httpx and httpx2 keep ``Authorization`` themselves: from
``http://host`` on port 80 to ``https://host`` on 443. A token-only context needs the redirect guard
there, and nowhere else (elsewhere the client drops the header on a hop to another origin).

Ports 80 and 443 cannot be bound by the tests, so the client's own HTTP transport runs over a
network backend that answers each connection with the next canned response and keeps what each
connection was sent; the transport calls the ``trace`` guard before each hop's headers go out,
as on a real network.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from asapp_auth import AuthPipeline

TOKEN = "tok-upgrade-s3cr3t"
REDIRECT = b"HTTP/1.1 302 Found\r\nLocation: https://api.example/next\r\nContent-Length: 0\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def _modules(name: str) -> tuple[ModuleType, ModuleType]:
    client = pytest.importorskip(name)
    core = pytest.importorskip("httpcore" if name == "httpx" else "httpcore2")
    return client, core


def _hops_backend(core: ModuleType) -> Any:
    class Stream(core.NetworkStream):  # type: ignore[misc,name-defined]
        def __init__(self, answer: bytes) -> None:
            self.sent = b""
            self._answer = answer

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            answer, self._answer = self._answer[:max_bytes], self._answer[max_bytes:]
            return answer

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self.sent += buffer

        def close(self) -> None:
            pass

        def start_tls(self, *args: Any, **kwargs: Any) -> Stream:
            return self  # no TLS: what matters is what the client writes

        def get_extra_info(self, info: str) -> Any:
            return None

    class Hops(core.NetworkBackend):  # type: ignore[misc,name-defined]
        """Connection n gets the n-th answer; ``streams`` holds every connection, in order."""

        def __init__(self, *answers: bytes) -> None:
            self._answers = list(answers)
            self.streams: list[tuple[str, int, Stream]] = []

        def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Stream:
            stream = Stream(self._answers.pop(0))
            self.streams.append((host, port, stream))
            return stream

    return Hops(REDIRECT, OK)


@pytest.mark.parametrize("name", ["httpx", "httpx2"])
@pytest.mark.parametrize("https_configured", [False, True])
def test_an_http_to_https_upgrade_carries_a_token_only_to_a_configured_origin(
    name: str, https_configured: bool
) -> None:
    """A token-only context sent to http://host is kept off the client's own https://host
    upgrade hop unless that origin is configured too."""
    client_module, core = _modules(name)
    origins = ["http://api.example"] + (["https://api.example"] if https_configured else [])
    pipeline = AuthPipeline(origins=origins)
    pipeline.load("alice", lambda needs_refresh: {"Auth": {"Token": TOKEN}})
    auth: Any = pipeline
    if name == "httpx2":
        from asapp_auth.httpx2 import Httpx2Auth

        auth = Httpx2Auth(pipeline)
    backend = _hops_backend(core)
    transport = client_module.HTTPTransport()
    transport._pool = core.ConnectionPool(network_backend=backend)
    with client_module.Client(auth=auth, transport=transport, follow_redirects=True) as client:
        response = client.get("http://api.example/start")
    assert response.status_code == 200
    (first_host, first_port, first), (hop_host, hop_port, hop) = backend.streams
    assert (first_host, first_port, hop_host, hop_port) == ("api.example", 80, "api.example", 443)
    assert f"Bearer {TOKEN}".encode() in first.sent
    assert (TOKEN.encode() in hop.sent) is https_configured
