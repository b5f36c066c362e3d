"""The ``ProviderTimeoutError`` a request gets, for each way a provider can be too slow for it.

They agree on what happens next: a provider call is never abandoned (its answer, late or not, is
kept for the next requests, which wait for that call rather than start another), except one that
could not even start because every provider thread of the process was taken.
"""

from __future__ import annotations

from .errors import ProviderTimeoutError

__all__ = ["answered_late", "no_thread_free", "not_answered_yet"]

_ADVICE = "make the provider answer sooner, or raise provider_timeout"


def not_answered_yet(customer_id: str, timeout: float) -> ProviderTimeoutError:
    """For a request that waited ``timeout`` seconds on a provider call still running."""
    return ProviderTimeoutError(
        f"no context for customer {customer_id!r} within provider_timeout={timeout:g}s; the "
        "provider call goes on, and its answer will be kept for the next requests, which wait "
        f"for that call rather than start another: {_ADVICE}",
        customer_id=customer_id,
    )


def answered_late(customer_id: str, took: float, timeout: float) -> ProviderTimeoutError:
    """For the synchronous request that ran a provider which took ``took`` seconds."""
    return ProviderTimeoutError(
        f"the provider for customer {customer_id!r} took {took:.1f}s, longer than "
        f"provider_timeout={timeout:g}s; its answer is kept for the next requests: {_ADVICE}",
        customer_id=customer_id,
    )


def no_thread_free(customer_id: str, timeout: float, limit: int) -> ProviderTimeoutError:
    """For a request whose provider call found no free provider thread in time."""
    return ProviderTimeoutError(
        f"no context for customer {customer_id!r} within provider_timeout={timeout:g}s: all "
        f"{limit} provider threads of this process were taken by providers that had not "
        "answered, so this one was not asked; the next request asks again. Find the provider "
        "that hangs, or give it a timeout of its own",
        customer_id=customer_id,
    )
