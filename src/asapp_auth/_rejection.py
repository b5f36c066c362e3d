"""``on_rejection``: what a request gets when the platform's 401 (or 431) is not resolved.

``"raise"`` (the default): ``TokenRejectedError`` (a context refused again right after it was
refreshed) or ``LoginRequiredError`` (a login that did not happen, or did not help).
``"return"``: the flow ends instead, and the client returns the platform's last answer, that 401
(or 431), as it would without auth; ``raise_for_status()`` then raises the client's own error.
Everything that is not the platform's answer (a provider that fails or is late, a blocked
redirect, a body that cannot be sent again) raises either way.

Sans I/O: ``returning`` wraps the flow, and every client's driver returns the last response when
the flow ends, so the option means the same for each of them.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal

from ._ops import OPS, Sent
from .errors import ConfigurationError, LoginRequiredError, TokenRejectedError

if TYPE_CHECKING:
    from ._wire import Wire

__all__ = ["OnRejection", "check_on_rejection", "returning"]

log = logging.getLogger("asapp_auth")

OnRejection = Literal["raise", "return"]


def check_on_rejection(value: object) -> bool:
    """``True`` when ``value`` is ``"return"``, ``False`` for ``"raise"``; else refused."""
    if value not in ("raise", "return"):
        raise ConfigurationError(
            f"on_rejection must be 'raise' (an exception, the default) or 'return' (the "
            f"platform's final 401 response), not {value!r}"
        )
    return value == "return"


def returning(
    steps: Generator[Any, Any, Sent], wire: Wire[Any, Any], *, answered: bool
) -> Generator[Any, Any, Sent]:
    """``steps``, ending where it would raise a rejection once the platform has answered.

    ``answered`` says whether a response was already given to ``steps``. Ends with nothing on
    the request: the flow took the context off before it would have raised.
    """
    status = None
    try:
        item = next(steps)
        while True:
            try:
                value = yield item
            except GeneratorExit:
                raise
            except Exception as exc:  # an operation's error, for the flow to handle
                item = steps.throw(exc)
                continue
            if not isinstance(item, OPS):  # a request: ``value`` is its response
                answered, status = True, wire.status(value)
            item = steps.send(value)
    except StopIteration as stop:
        ended: Sent = stop.value
        return ended
    except (TokenRejectedError, LoginRequiredError) as exc:
        if not answered:
            raise  # no answer from the platform to return: a provider said the session is gone
        log.info(
            "%s: the platform's HTTP %s is returned instead (on_rejection='return')",
            type(exc).__name__,
            status or 401,
        )
        return (None, 0, None, None)
    finally:
        steps.close()
