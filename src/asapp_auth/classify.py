"""Reading a response for what it says about authentication.

The default rules (``default_classifier``), after RFC 6750:

============  =======================================================  ==============
context sent  response                                                 verdict
============  =======================================================  ==============
yes           401, ``WWW-Authenticate: Bearer error="invalid_token"``  TOKEN_EXPIRED
yes           401 with no Bearer ``error`` (the context was refused)   TOKEN_EXPIRED
yes           401 with another Bearer ``error`` (``invalid_request``)  OK (returned)
yes           431 (headers too large: taken as the context's fault)    TOKEN_EXPIRED
no            401 (anonymous: login required)                          LOGIN_REQUIRED
no            431 (the app's own headers are too large)                OK (returned)
any           anything else                                            OK (returned)
============  =======================================================  ==============

TOKEN_EXPIRED drops the context from the cache, asks the provider for a fresh one
(``needs_refresh=True``) and sends the request once more; refused again, the request raises
``TokenRejectedError`` (``status_code`` 401 or 431). A connection the server closes gives no
response to classify: the client raises its own error to the app, and the context stays cached.

A plugin's ``classify_response`` hook is asked first on a 401 (it may also answer ``RETRY``: send
again once with a fresh per-request part). Replace the rules with
``AuthPipeline(classify=function)``: ``function(response, context_attached)`` returns a
``Verdict``, or ``None`` for the default rules. A classifier that needs the response body
sets ``function.reads_body_on = {status, ...}``; only those responses are read before it is called.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable

import httpx

__all__ = ["Classifier", "Verdict", "bearer_error", "default_classifier", "default_verdict"]

# The statuses the default rules may act on; every other response is returned as it is.
REFUSALS = frozenset({401, 431})


class Verdict(enum.Enum):
    OK = "ok"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - a verdict, not a password
    LOGIN_REQUIRED = "login_required"
    # Send the request again once, same context, fresh per-request part (a server nonce).
    RETRY = "retry"


Classifier = Callable[[httpx.Response, bool], "Verdict | None"]

_BEARER_ERROR = re.compile(r'error\s*=\s*(?:"([^"]*)"|([^\s,]+))', re.IGNORECASE)


def bearer_error(response: httpx.Response) -> str | None:
    """The ``error`` parameter of a Bearer ``WWW-Authenticate`` challenge, if there is one."""
    return _bearer_error(response.headers.get_list("www-authenticate"))


def _bearer_error(challenges: list[str]) -> str | None:
    for challenge in challenges:
        scheme, _, params = challenge.strip().partition(" ")
        if scheme.lower() == "bearer":
            match = _BEARER_ERROR.search(params)
            if match:
                return match.group(1) if match.group(1) is not None else match.group(2)
    return None


def default_classifier(response: httpx.Response, context_attached: bool) -> Verdict:
    """Classify by the rules in this module's table."""
    status = response.status_code
    if status not in REFUSALS:
        return Verdict.OK
    challenges = response.headers.get_list("www-authenticate") if status == 401 else []
    return default_verdict(status, challenges, context_attached)


def default_verdict(status: int, challenges: list[str], context_attached: bool) -> Verdict:
    """The rules in this module's table, for any client: the status and the
    ``WWW-Authenticate`` values of a response."""
    if status == 431 and context_attached:
        return Verdict.TOKEN_EXPIRED
    if status != 401:
        return Verdict.OK
    if not context_attached:
        return Verdict.LOGIN_REQUIRED
    error = _bearer_error(challenges)
    if error is None or error == "invalid_token":
        return Verdict.TOKEN_EXPIRED
    return Verdict.OK
