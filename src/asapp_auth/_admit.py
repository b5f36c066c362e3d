"""What a pipeline accepts as a context before it caches one, and what it says when a server
refuses one as too large.

A context is admitted when the default attacher (``MapContext``) finds a credential in it, and
when both what the attacher puts on each request and what the cache keeps (the context as compact
JSON, with its state) are within ``max_context_bytes``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from .attach import Attacher, _Mapped, attached_bytes
from .context import AuthContext
from .errors import AsappAuthError, ConfigurationError, InvalidContextError, ProviderError

# What real servers take in a request's headers: h11 (uvicorn) and Node.js 16 KiB in all, nginx
# 8 KiB per line, Apache and gunicorn 8190 bytes per line. Contexts that fit leave room for the
# app's own headers; larger ones are usually a provider's mistake (a whole session, not its id).
DEFAULT_MAX_CONTEXT_BYTES = 16 * 1024
_MAPPED_KEYS = ("Token", "Headers", "Cookies", "Body")


def check_max_bytes(value: object) -> int:
    """``max_context_bytes`` as given in code: a whole number above 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"max_context_bytes must be a whole number of bytes above 0, not {value!r}"
        )
    return value


def admit(
    context: AuthContext, attacher: Attacher, max_bytes: int, plugin: str, source: str
) -> None:
    """Raise ``InvalidContextError`` when the default attacher would send no credential from
    ``context``, or when it is over ``max_bytes``: on a request, or as the cache keeps it."""
    try:
        prepared = attacher.prepare(context)
    except AsappAuthError:
        raise
    except Exception as exc:
        raise ProviderError(
            f"the pipeline's attacher ({type(attacher).__name__}) raised {type(exc).__name__} "
            f"while preparing the context from {source}; see the chained exception. Nothing was "
            "cached",
            plugin=plugin,
        ) from exc
    if isinstance(prepared, _Mapped) and not prepared.credential:
        raise InvalidContextError(_nothing_attached(context, source), plugin=plugin)
    stored = _stored_bytes(context)
    attached = attached_bytes(prepared)
    on_request = stored if attached is None else attached
    if max(stored, on_request) > max_bytes:
        raise InvalidContextError(
            f"{source} returned a context of {max(stored, on_request):,} bytes ({on_request:,} "
            f"on each request, {stored:,} kept in the cache), over max_context_bytes="
            f"{max_bytes:,}: servers refuse request headers that large (HTTP 431), and the cache "
            "would hold it for every customer. Return a smaller context (a reference to a "
            "session rather than the session itself), or raise max_context_bytes if the "
            "platform takes it. Nothing was cached",
            plugin=plugin,
        )


def _stored_bytes(context: AuthContext) -> int:
    """The context and its state as compact JSON: what a cache keeps (and Redis, sealed)."""
    size = context._size  # measured while it was validated
    if context.state:
        size += len(json.dumps(dict(context.state), separators=(",", ":")))
    return size


def _nothing_attached(context: AuthContext, source: str) -> str:
    auth = context.get("Auth")
    if auth is None:
        why = f"it has no Auth (its keys: {_keys(context, ['Auth'])})"
    else:
        given = [key for key in _MAPPED_KEYS if key in auth]
        if given:
            verb = " holds" if len(given) == 1 else " hold"
            why = " and ".join(f"Auth.{key}" for key in given) + verb + " no value"
        else:
            held = f" (it holds {_keys(auth, _MAPPED_KEYS)})" if auth else ""
            why = f"Auth holds no Token, Headers, Cookies or Body{held}"
    return (
        f"{source} returned a context that attaches no credential: {why}. The default "
        "attacher sends Auth.Token (as a Bearer token), Auth.Headers, Auth.Cookies and "
        "Auth.Body: return for instance {'Auth': {'Token': ...}}, or None to let the next "
        "provider answer; to send other keys, give the pipeline attach= (ContextHeader, or your "
        "own function)"
    )


def _keys(mapping: Mapping[str, Any], known: list[str] | tuple[str, ...]) -> str:
    """The mapping's keys (names, never values), each with the known key it may be a typo of."""
    shown = []
    for key in list(mapping)[:8]:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        shown.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    more = len(mapping) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def head_bytes(headers: Any) -> int:
    """The size of a request's header lines as sent, from any client's headers mapping."""
    return sum(len(str(name)) + len(str(value)) + 4 for name, value in headers.items())


def too_large_again(origin: str, customer_id: str, head: int) -> str:
    """The message of a second 431 to a request, the context refreshed in between."""
    return (
        f"{origin} refused the request headers as too large (HTTP 431) with the context of "
        f"customer {customer_id!r} again right after it was refreshed ({head:,} bytes of headers "
        "with it); have the provider return a smaller context, or lower max_context_bytes to "
        "what the platform takes so that such contexts are refused before they are sent"
    )
