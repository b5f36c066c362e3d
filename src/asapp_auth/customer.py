"""``Customer``: who requests are made for, and the app's own context provider for them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .context import AuthContext

__all__ = ["ContextProvider", "Customer"]

ProviderResult: TypeAlias = "Mapping[str, Any] | AuthContext | None"
ContextProvider: TypeAlias = Callable[..., "Mapping[str, Any] | AuthContext | None"]
"""An app's context provider, in either of the SDKs' shapes:

- iOS style, ``provider(needs_refresh) -> dict``;
- Android style, ``provider(customer_id, needs_refresh) -> dict | None``.
"""


class _Identity(int):
    """An object, compared by identity and hashed by ``id`` (providers may be unhashable).

    An ``int`` (the object's id) so that hashing it, on every cached request's lookup, is the
    int's own hash rather than a call into Python; it holds the object, so that id stays its own.
    """

    obj: object

    def __new__(cls, obj: object) -> _Identity:
        self = super().__new__(cls, id(obj))
        self.obj = obj
        return self

    __hash__ = int.__hash__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __repr__(self) -> str:
        return f"<provider {type(self.obj).__name__}>"


@dataclass(frozen=True, slots=True)
class Customer:
    """An identified customer: an id, and optionally the app's own context provider for it.

    Two customers are equal when both the id and the provider are the same, so a customer set
    again with another provider never reuses the first provider's cached context.
    """

    id: str
    provider: ContextProvider | None = field(default=None, repr=False)
    _takes_id: bool = field(default=False, repr=False, compare=False)
    # What the provider's contexts are valid for, the same in every process: the part of a shared
    # cache's key that stands for an app's own provider. None: its contexts stay in the process.
    cache_scope: str | None = field(default=None, repr=False)
    # What the pipeline caches this customer's context under: never a secret. The id alone for
    # customers served by plugins (a server may cache 100,000 of them), else id and provider:
    # the provider itself, held, not its id(), which a new provider reuses once the old is freed.
    cache_key: str | tuple[str, _Identity] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = self.id if self.provider is None else (self.id, _Identity(self.provider))
        object.__setattr__(self, "cache_key", key)

    @classmethod
    def create(
        cls, customer_id: object, provider: object = None, cache_scope: object = None
    ) -> Customer:
        """Validate ``customer_id``, ``provider`` and ``cache_scope`` and build the customer.

        Without ``cache_scope``, a provider's own ``cache_scope`` attribute (a str) is used.
        """
        if not isinstance(customer_id, str) or not customer_id:
            raise ConfigurationError(
                f"customer_id must be a non-empty str, not {type(customer_id).__name__}; "
                "use clear() to go back to an anonymous customer"
            )
        if cache_scope is not None:
            if not isinstance(cache_scope, str) or not cache_scope.strip():
                given = (
                    "an empty str" if isinstance(cache_scope, str) else type(cache_scope).__name__
                )
                raise ConfigurationError(
                    "cache_scope must be a non-empty str naming what the provider's contexts are "
                    f"valid for, the same in every process, not {given}"
                )
            if provider is None:
                raise ConfigurationError(
                    "cache_scope is for an app's own context_provider; give one, or leave "
                    "cache_scope out: contexts from plugins are shared by the plugins' names "
                    "and settings"
                )
        if provider is None:
            return cls(customer_id)
        if cache_scope is None:
            declared = getattr(provider, "cache_scope", None)
            cache_scope = declared if isinstance(declared, str) and declared else None
        takes_id = _provider_takes_id(provider)
        return cls(customer_id, provider, takes_id, cache_scope)  # type: ignore[arg-type]

    def ask(self, needs_refresh: bool) -> ProviderResult:
        """Call this customer's own provider in whichever shape it has."""
        assert self.provider is not None
        if self._takes_id:
            return self.provider(self.id, needs_refresh)
        return self.provider(needs_refresh)


def _provider_takes_id(provider: object) -> bool:
    if not callable(provider):
        raise ConfigurationError(
            f"context_provider must be callable, not {type(provider).__name__}: "
            "a function (needs_refresh) -> dict, or (customer_id, needs_refresh) -> dict"
        )
    # An object whose __call__ is async is as unusable as an async function.
    call = provider if inspect.isroutine(provider) else type(provider).__call__
    if inspect.iscoroutinefunction(provider) or inspect.iscoroutinefunction(call):
        raise ConfigurationError(
            "context_provider is an async function; give a plain function: asapp-auth calls it "
            "off the event loop, in a worker thread, where it may block"
        )
    try:
        params = inspect.signature(provider).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return len(positional) != 1
    if len(positional) not in (1, 2):
        raise ConfigurationError(
            f"context_provider takes {len(positional)} required arguments; it must take "
            "(needs_refresh) or (customer_id, needs_refresh)"
        )
    return len(positional) == 2
