"""The platform stand-in's state, shared by the fixtures and the tests."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BearerServer:
    """A platform stand-in on 127.0.0.1 accepting the tokens in ``valid``, from the Bearer
    ``Authorization`` or from header ``X-Api-Key``; 401 with ``error="invalid_token"`` otherwise."""

    valid: set[str]
    url: str = ""
    seen: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
