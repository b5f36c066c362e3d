"""A client-credentials token endpoint on 127.0.0.1 for the stampede benchmarks: a thread per
connection, so that callers that do not share one refresh all get served in parallel rather than
queueing behind ``FakePlatform``'s small worker pool."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from asapp_auth.testing import FakePlatform

__all__ = ["TokenEndpoint"]


class TokenEndpoint:
    """An OAuth 2 client-credentials token endpoint taking ``delay`` seconds per call.

    A thread per connection, so concurrent calls are answered in parallel. Tokens are issued by
    ``platform``, valid there for ``lifetime`` seconds. ``spans`` holds when each call began and
    ended (``time.monotonic``, the same clock in every process).
    """

    def __init__(self, platform: FakePlatform, delay: float) -> None:
        self.platform = platform
        self.delay = delay
        self.lifetime: float = 3600
        self.calls = 0
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # or delayed ACKs add 40 ms to every call

            def do_POST(self) -> None:
                began = time.monotonic()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(endpoint.delay)
                with endpoint._lock:
                    endpoint.calls += 1
                    lifetime = endpoint.lifetime
                token = endpoint.platform.issue_token("service", lifetime)
                body = json.dumps(
                    {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with endpoint._lock:
                    endpoint.spans.append((began, time.monotonic()))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 2048  # the default of 5 drops a burst of connects
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def reset(self, lifetime: float) -> None:
        with self._lock:
            self.calls = 0
            self.spans = []
            self.lifetime = lifetime

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
