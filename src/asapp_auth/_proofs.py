"""Per-request parts of an attachment (``request_proof``) and plugin verdicts on 401 responses
(``classify_response``): the two hooks that run on the request path.

The pipeline looks them up when plugins are registered, not per request, so that a pipeline
with no implementation pays one attribute read for each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from ._hookcalls import HookCall
from .classify import Verdict
from .context import _BAD_HEADER_VALUE, _TOKEN, AuthContext
from .customer import Customer
from .errors import ProviderError

__all__ = ["Classifies", "Proof", "Proofs", "classifier_of", "proofs_of"]

Proofs = Callable[[Customer, AuthContext, str, str], tuple[tuple[str, str], ...]]
Classifies = Callable[
    [Customer | None, AuthContext | None, int, Mapping[str, str], str], Verdict | None
]


class Proof:
    """The per-request headers one request carries, and what makes them again for a redirect hop
    within the configured origins: a DPoP proof names one request's method and URL, once."""

    __slots__ = ("_context", "_customer", "_proofs", "headers")

    def __init__(
        self,
        proofs: Proofs,
        customer: Customer,
        context: AuthContext,
        headers: tuple[tuple[str, str], ...],
    ) -> None:
        self._proofs, self._customer, self._context = proofs, customer, context
        self.headers = headers

    def names(self) -> frozenset[str]:
        """The lowercased names of the headers."""
        return frozenset(name.lower() for name, _ in self.headers)

    def for_hop(self, method: str, url: str) -> tuple[tuple[str, str], ...]:
        """New headers for a hop to ``method url`` (``url`` without query or fragment)."""
        return self._proofs(self._customer, self._context, method, url)

    def __repr__(self) -> str:
        return f"<Proof of {len(self.headers)} header(s)>"


def proofs_of(manager: pluggy.PluginManager) -> Proofs | None:
    """The ``request_proof`` implementations as one function, or ``None`` when there are none."""
    if not manager.hook.request_proof.get_hookimpls():
        return None

    def proofs(
        customer: Customer, context: AuthContext, method: str, url: str
    ) -> tuple[tuple[str, str], ...]:
        kwargs = {"customer": customer, "context": context, "method": method, "url": url}
        call = HookCall(manager, "request_proof", kwargs)
        headers: list[tuple[str, str]] = []
        for impl in call.impls:
            result = call(impl)
            if result is not None:
                headers.extend(_checked(result, impl.plugin_name))
        return tuple(headers)

    return proofs


def classifier_of(manager: pluggy.PluginManager) -> Classifies | None:
    """The ``classify_response`` implementations as one function, or ``None`` when none."""
    if not manager.hook.classify_response.get_hookimpls():
        return None

    def classify(
        customer: Customer | None,
        context: AuthContext | None,
        status: int,
        headers: Mapping[str, str],
        url: str,
    ) -> Verdict | None:
        kwargs = {
            "customer": customer,
            "context": context,
            "status": status,
            "headers": headers,
            "url": url,
        }
        call = HookCall(manager, "classify_response", kwargs)
        for impl in call.impls:
            verdict = call(impl)
            if verdict is None:
                continue
            if not isinstance(verdict, Verdict):
                raise ProviderError(
                    f"plugin {impl.plugin_name!r}: classify_response returned "
                    f"{type(verdict).__name__}; return an asapp_auth.Verdict or None",
                    plugin=impl.plugin_name,
                )
            return verdict
        return None

    return classify


def _checked(result: Any, plugin: str) -> list[tuple[str, str]]:
    """``result`` as header pairs, refused with a typed error naming ``plugin`` when it is not a
    mapping of header names to header values (never quoting a value: it may be a secret)."""
    if not isinstance(result, Mapping):
        raise ProviderError(
            f"plugin {plugin!r}: request_proof returned {type(result).__name__}; return a "
            "mapping of header names to values, or None",
            plugin=plugin,
        )
    pairs = []
    for name, value in result.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ProviderError(
                f"plugin {plugin!r}: request_proof gave a header name that is not an HTTP token "
                f"({type(name).__name__}); use names such as 'DPoP'",
                plugin=plugin,
            )
        if not isinstance(value, str) or not value or _BAD_HEADER_VALUE.search(value):
            raise ProviderError(
                f"plugin {plugin!r}: request_proof gave header {name!r} a value that cannot be "
                "sent (not a non-empty str, or control characters or edge white space in it)",
                plugin=plugin,
            )
        pairs.append((name, value))
    return pairs
