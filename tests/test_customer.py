"""Customer: ids, the two provider shapes of the SDKs, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from asapp_auth import Customer
from asapp_auth.errors import ConfigurationError


def test_ios_style_provider_gets_needs_refresh() -> None:
    """A one-argument provider is called with needs_refresh only."""
    seen: list[Any] = []
    customer = Customer.create("alice", lambda needs_refresh: seen.append(needs_refresh) or {})
    customer.ask(True)
    assert seen == [True]


def test_android_style_provider_gets_customer_id_and_refresh() -> None:
    """A two-argument provider is called with the customer id and needs_refresh."""
    seen: list[Any] = []

    def provider(customer_id: str, refresh: bool) -> None:
        seen.append((customer_id, refresh))

    Customer.create("bob", provider).ask(False)
    assert seen == [("bob", False)]


def test_callable_object_and_bound_method_providers() -> None:
    """Callable objects and bound methods are inspected like functions."""

    class Provider:
        def __call__(self, needs_refresh: bool) -> dict[str, Any]:
            return {"Auth": {"Token": str(needs_refresh)}}

        def android(self, customer_id: str, needs_refresh: bool) -> dict[str, Any]:
            return {"Auth": {"Token": customer_id}}

    assert Customer.create("a", Provider()).ask(True) == {"Auth": {"Token": "True"}}
    assert Customer.create("a", Provider().android).ask(True) == {"Auth": {"Token": "a"}}


@pytest.mark.parametrize("customer_id", ["", None, 42, b"alice"])
def test_bad_customer_ids_are_refused(customer_id: object) -> None:
    """A customer id must be a non-empty str."""
    with pytest.raises(ConfigurationError, match="customer_id"):
        Customer.create(customer_id)


def test_bad_providers_are_refused() -> None:
    """Non-callables, async functions and wrong arities are refused with advice."""

    async def async_provider(needs_refresh: bool) -> dict[str, Any]:
        return {}

    class AsyncCall:
        async def __call__(self, needs_refresh: bool) -> dict[str, Any]:
            return {}

    with pytest.raises(ConfigurationError, match="callable"):
        Customer.create("a", "not callable")
    with pytest.raises(ConfigurationError, match="async"):
        Customer.create("a", async_provider)
    with pytest.raises(ConfigurationError, match="async"):
        Customer.create("a", AsyncCall())
    with pytest.raises(ConfigurationError, match="3 required"):
        Customer.create("a", lambda a, b, c: None)


def test_customers_differ_by_provider_and_repr_hides_it() -> None:
    """The same id with another provider is another customer; repr shows the id only."""

    def one(needs_refresh: bool) -> None:
        return None

    def two(needs_refresh: bool) -> None:
        return None

    assert Customer.create("a", one) == Customer.create("a", one)
    assert Customer.create("a", one) != Customer.create("a", two)
    assert Customer.create("a", one).cache_key != Customer.create("a", two).cache_key
    assert repr(Customer.create("a", one)) == "Customer(id='a')"


def test_a_cache_key_is_the_provider_itself_not_its_id_number() -> None:
    """Cache keys of one provider are equal and hash alike; another provider's, or the bare id
    number of this one, are not equal to it, and an unhashable provider is fine."""

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, needs_refresh: bool) -> None:
            return None

    provider = Unhashable()
    key = Customer.create("a", provider).cache_key
    again = Customer.create("a", provider).cache_key
    assert key == again
    assert hash(key) == hash(again)
    assert {key: 1}[again] == 1
    assert isinstance(key, tuple)
    assert key != Customer.create("a", Unhashable()).cache_key
    assert key[1] != id(provider)
    assert key[1] == again[1]
    assert not key[1] != again[1]  # noqa: SIM202  (__ne__ itself)
    assert repr(key[1]) == "<provider Unhashable>"
