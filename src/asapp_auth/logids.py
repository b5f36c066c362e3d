"""How log records name a customer: by a short digest of its id, unless the app asks for ids.

Customer ids are often e-mail addresses, and log records travel further than an app's own data.
So records name a customer as ``#`` and the first 12 hex digits of the SHA-256 of its id
(``hashlib.sha256(customer_id.encode()).hexdigest()[:12]``): the same in every process and run, so
one customer's records can still be found, given the id. With ``ASAPP_AUTH_LOG_CUSTOMER_IDS`` set
to a non-empty value other than ``0`` they name the id itself, as ``repr`` shows it.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["IDS_ENV", "logged"]

IDS_ENV = "ASAPP_AUTH_LOG_CUSTOMER_IDS"


def logged(customer_id: str) -> str:
    """``customer_id`` as log records show it: its digest, or the id when the app asks."""
    if os.environ.get(IDS_ENV, "0") not in ("", "0"):
        return repr(customer_id)
    return "#" + hashlib.sha256(customer_id.encode()).hexdigest()[:12]
