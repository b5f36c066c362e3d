"""What the tests share besides fixtures: the app's API key and the session service's state."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

API_KEY = f"example-key-{secrets.token_urlsafe(12)}"
"""The app's key for the session service; the log guard watches for it."""


@dataclass
class SessionService:
    """The company's session service: platform tokens for the customers holding a session."""

    url: str
    sessions: set[str] = field(default_factory=lambda: {"alice", "bob"})
    asked: list[tuple[str, bool]] = field(default_factory=list)  # (customer, fresh)
    status: int = 200  # anything else: the service fails
    # While ``stalled`` is set, requests wait (30 s at most) for ``released``, then get a 503.
    stalled: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
