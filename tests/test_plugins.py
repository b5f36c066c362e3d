"""Plugins: discovery through entry points, registration, precedence, and what is refused."""

from __future__ import annotations

import logging
import re
import sys
import types
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from asapp_auth import AuthPipeline, discover, get_plugin_manager, hookimpl
from asapp_auth.errors import ConfigurationError, NoProviderError, PluginError, PluginWarning
from asapp_auth.plugins import configure_plugin, hooks_of
from asapp_auth.testing import FakePlatform

ORIGIN = "https://api.chat.example"


class Answers:
    """A provider plugin answering every customer with a fixed token."""

    def __init__(self, token: str, customers: set[str] | None = None) -> None:
        self.token = token
        self.customers = customers

    @hookimpl
    def provide_context(self, customer: Any) -> dict[str, Any] | None:
        if self.customers is not None and customer.id not in self.customers:
            return None
        return {"Auth": {"Token": self.token}}


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Substitute the installed entry points of the asapp_auth group with fake modules."""
    good = types.ModuleType("fake_good_plugin")

    def from_settings(settings: dict[str, Any]) -> Answers:
        if "token" not in settings:
            raise KeyError("token")
        return Answers(settings["token"])

    good.from_settings = from_settings  # type: ignore[attr-defined]
    plain = types.ModuleType("fake_plain_plugin")

    @hookimpl
    def provide_context(customer: Any) -> dict[str, Any]:
        return {"Auth": {"Token": "plain"}}

    plain.provide_context = provide_context  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_good_plugin", good)
    monkeypatch.setitem(sys.modules, "fake_plain_plugin", plain)
    values = {
        "good": "fake_good_plugin",
        "plain": "fake_plain_plugin",
        "broken": "fake_missing_module_xyz",
    }
    fakes = [metadata.EntryPoint(name, value, "asapp_auth") for name, value in values.items()]
    real = metadata.entry_points

    def entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == "asapp_auth":
            return fakes
        return real(**kwargs)

    monkeypatch.setattr("asapp_auth.plugins.metadata.entry_points", entry_points)
    monkeypatch.delenv("ASAPP_AUTH_PLUGINS", raising=False)
    return values


def test_discovery_reports_a_broken_plugin_by_name_and_loads_the_others(
    entry_points: dict[str, str],
) -> None:
    """A plugin that fails to import is listed with its error; the others load."""
    found = {info.name: info for info in discover()}
    assert found["good"].loaded
    assert found["plain"].loaded
    assert not found["broken"].loaded
    assert "ModuleNotFoundError" in (found["broken"].error or "")


def test_allow_list_environment_variable(
    entry_points: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ASAPP_AUTH_PLUGINS limits which entry points are loaded at all."""
    monkeypatch.setenv("ASAPP_AUTH_PLUGINS", "plain")
    assert [info.name for info in discover()] == ["plain"]
    monkeypatch.setenv("ASAPP_AUTH_PLUGINS", "")
    assert discover() == []


def test_installed_is_not_active(entry_points: dict[str, str]) -> None:
    """An installed plugin answers nothing until the pipeline is configured with it."""
    pipeline = AuthPipeline(origins=[ORIGIN], plugin_manager=get_plugin_manager())
    pipeline.set_customer("alice")
    with pytest.raises(NoProviderError, match="alice"):
        pipeline.get_context()


def test_configured_plugins_answer_in_the_order_named(entry_points: dict[str, str]) -> None:
    """Entry-point plugins are asked in the order they are named; settings reach the factory."""
    pipeline = AuthPipeline(
        origins=[ORIGIN], plugins={"good": {"token": "from-good"}, "plain": None}
    )
    pipeline.set_customer("alice")
    context = pipeline.get_context()
    assert context is not None
    assert context.token == "from-good"
    reverse = AuthPipeline(origins=[ORIGIN], plugins={"plain": None, "good": {"token": "g"}})
    reverse.set_customer("alice")
    assert reverse.get_context().token == "plain"  # type: ignore[union-attr]


def test_broken_unknown_and_misconfigured_plugins_fail_with_their_name(
    entry_points: dict[str, str],
) -> None:
    """Naming a broken, unknown or misconfigured plugin raises an error naming it."""
    with pytest.raises(PluginError, match="'broken'"):
        AuthPipeline(origins=[ORIGIN], plugins=["broken"])
    with pytest.raises(ConfigurationError, match="'nosuch'"):
        AuthPipeline(origins=[ORIGIN], plugins=["nosuch"])
    with pytest.raises(PluginError, match="'good': from_settings raised KeyError"):
        AuthPipeline(origins=[ORIGIN], plugins={"good": {}})
    with pytest.raises(PluginError, match="takes no settings"):
        AuthPipeline(origins=[ORIGIN], plugins={"plain": {"x": 1}})
    with pytest.raises(ConfigurationError, match="list of names"):
        AuthPipeline(origins=[ORIGIN], plugins="good")


def test_precedence_customer_provider_then_code_plugins_then_entry_points(
    entry_points: dict[str, str],
) -> None:
    """The customer's own provider wins; then plugins registered in code, last first."""
    pipeline = AuthPipeline(origins=[ORIGIN], plugins=["plain"])
    first = Answers("first")
    pipeline.register(first)
    pipeline.set_customer("alice")
    assert pipeline.get_context().token == "first"  # type: ignore[union-attr]
    pipeline.register(Answers("second"))
    pipeline.set_customer("bob")
    assert pipeline.get_context().token == "second"  # type: ignore[union-attr]
    pipeline.set_customer("carol", lambda needs_refresh: {"Auth": {"Token": "own"}})
    assert pipeline.get_context().token == "own"  # type: ignore[union-attr]


def test_a_plugin_returning_none_passes_to_the_next() -> None:
    """None from a provider means "not mine": the next provider is asked."""
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(Answers("for-bob", customers={"bob"}))
    pipeline.register(Answers("for-alice", customers={"alice"}))
    pipeline.set_customer("bob")
    assert pipeline.get_context().token == "for-bob"  # type: ignore[union-attr]


def test_async_and_misspelt_hooks_are_refused_at_registration() -> None:
    """An async hook or a hook name that does not exist is refused when registered."""

    class AsyncPlugin:
        @hookimpl
        async def provide_context(self, customer: Any) -> None:
            return None

    class Misspelt:
        @hookimpl
        def provide_contexts(self, customer: Any) -> None:
            return None

    class WrongArgs:
        @hookimpl
        def provide_context(self, customer: Any, user: Any) -> None:
            return None

    pipeline = AuthPipeline(origins=[ORIGIN])
    for plugin, words in (
        (AsyncPlugin(), "async"),
        (Misspelt(), "provide_contexts"),
        (WrongArgs(), "user"),
    ):
        with pytest.raises(PluginError, match=words):
            pipeline.register(plugin, name=type(plugin).__name__)
        assert not pipeline.plugin_manager.is_registered(plugin)


def test_unregister_removes_a_plugin() -> None:
    """An unregistered plugin is asked no more."""
    pipeline = AuthPipeline(origins=[ORIGIN])
    plugin = Answers("x")
    pipeline.register(plugin)
    pipeline.unregister(plugin)
    pipeline.set_customer("alice")
    with pytest.raises(NoProviderError):
        pipeline.get_context()


def test_hooks_of_lists_implemented_hooks(entry_points: dict[str, str]) -> None:
    """hooks_of names the hooks an object implements."""
    assert hooks_of(Answers("x")) == ["provide_context"]
    info = {i.name: i for i in discover()}["plain"]
    assert hooks_of(configure_plugin(info)) == ["provide_context"]


def test_hook_tracing_names_hooks_and_plugins_but_no_values(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ASAPP_AUTH_TRACE_HOOKS logs hook calls with plugin names, never arguments or results."""
    monkeypatch.setenv("ASAPP_AUTH_TRACE_HOOKS", "1")
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.set_customer("alice", lambda needs_refresh: {"Auth": {"Token": "s3cr3t-trace"}})
    with caplog.at_level(logging.DEBUG, logger="asapp_auth.hooks"):
        pipeline.plugin_manager.hook.on_token_expired(
            pipeline=pipeline, customer=pipeline.customer, context=pipeline.get_context()
        )
    messages = [r.getMessage() for r in caplog.records if r.name == "asapp_auth.hooks"]
    assert any("on_token_expired" in m for m in messages)


class FromPlatform:
    """A provider plugin answering with the fake platform's own tokens."""

    def __init__(self, platform: FakePlatform) -> None:
        self.platform = platform

    @hookimpl
    def provide_context(self, customer: Any) -> Any:
        return self.platform.context_for(customer.id)


class Noticing:
    """A plugin that implements the two notification hooks and counts their calls."""

    def __init__(self) -> None:
        self.expired = 0
        self.cleared = 0

    @hookimpl
    def on_token_expired(self) -> None:
        self.expired += 1

    @hookimpl
    def on_customer_cleared(self) -> None:
        self.cleared += 1


def test_every_hook_the_pipeline_calls_is_traced(
    platform: FakePlatform, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """provide_context, on_token_expired and on_customer_cleared, called by the pipeline itself
    during a rejection and a customer switch, are traced with the plugins they reached."""
    monkeypatch.setenv("ASAPP_AUTH_TRACE_HOOKS", "1")
    pipeline = AuthPipeline(origins=[platform.origin])
    noticing = Noticing()
    pipeline.register(noticing, name="noticing")
    pipeline.register(FromPlatform(platform), name="platform")
    pipeline.register(Answers("unused", customers=set()), name="answers")
    pipeline.set_customer("alice")
    with (
        caplog.at_level(logging.DEBUG, logger="asapp_auth.hooks"),
        httpx.Client(auth=pipeline) as client,
    ):
        assert client.get(f"{platform.url}/v1/account").status_code == 200
        platform.expire()
        assert (
            client.get(f"{platform.url}/v1/account").status_code == 200
        )  # rejected, refreshed, retried
        pipeline.set_customer("bob")
    assert (noticing.expired, noticing.cleared) == (1, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == "asapp_auth.hooks"]
    for hook in ("provide_context", "on_token_expired", "on_customer_cleared"):
        assert any(m.startswith(f"calling {hook} on ") for m in messages), hook
    assert "calling on_token_expired on ['noticing']" in messages
    assert "calling on_customer_cleared on ['noticing']" in messages
    assert "provide_context of plugin 'answers' returned None" in messages
    assert "on_token_expired of plugin 'noticing' returned None" in messages
    text = "\n".join(messages)
    assert "Token" not in text
    assert "alice" not in text


def test_tracing_is_off_unless_asked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without ASAPP_AUTH_TRACE_HOOKS the pipeline's own hook calls log nothing."""
    monkeypatch.delenv("ASAPP_AUTH_TRACE_HOOKS", raising=False)
    pipeline = AuthPipeline(origins=[ORIGIN])
    pipeline.register(Answers("x"), name="answers")
    pipeline.set_customer("alice")
    with caplog.at_level(logging.DEBUG, logger="asapp_auth.hooks"):
        pipeline.get_context()
    assert [r for r in caplog.records if r.name == "asapp_auth.hooks"] == []


def test_a_misspelt_parameter_names_the_plugin_and_the_right_parameter() -> None:
    """A hookimpl parameter the hook does not give is refused naming the plugin (not pluggy's
    numeric id), the hook, the parameter and the closest one the hook has."""

    class Typo:
        @hookimpl
        def provide_context(self, custmer: Any) -> None:
            return None

    pipeline = AuthPipeline(origins=[ORIGIN])
    with pytest.raises(PluginError) as caught:
        pipeline.register(Typo())
    message = str(caught.value)
    assert message.startswith("plugin 'Typo': hook 'provide_context' takes a parameter 'custmer'")
    assert "did you mean 'customer'?" in message
    assert not re.search(r"\d{5,}", message)
    assert caught.value.plugin == "Typo"


def test_a_misspelt_hook_name_gets_the_closest_hook() -> None:
    """A @hookimpl whose name is no hook is refused with the closest hook name."""

    class Expiry:
        @hookimpl
        def on_token_expird(self) -> None:
            return None

    pipeline = AuthPipeline(origins=[ORIGIN])
    with pytest.raises(PluginError, match=r"did you mean 'on_token_expired'\?"):
        pipeline.register(Expiry(), name="expiry")


def test_every_hook_problem_of_a_plugin_is_reported_at_once() -> None:
    """A plugin with several broken hookimpls gets one error listing each of them."""

    class Broken:
        @hookimpl
        def on_token_expird(self) -> None:
            return None

        @hookimpl
        async def provide_context(self, customer: Any) -> None:
            return None

    pipeline = AuthPipeline(origins=[ORIGIN])
    with pytest.raises(PluginError) as caught:
        pipeline.register(Broken(), name="broken")
    message = str(caught.value)
    assert message.startswith("plugin 'broken': 2 problems:")
    assert "'on_token_expird'" in message
    assert "async" in message


def test_an_unmarked_hook_named_method_warns_naming_the_plugin() -> None:
    """A method named like a hook but without @hookimpl is never called: registering warns."""

    class Forgot:
        def provide_context(self, customer: Any) -> dict[str, Any]:
            return {"Auth": {"Token": "never"}}

    pipeline = AuthPipeline(origins=[ORIGIN])
    with pytest.warns(PluginWarning, match=r"plugin 'forgot': 'provide_context' is not marked"):
        pipeline.register(Forgot(), name="forgot")
    pipeline.set_customer("alice")
    with pytest.raises(NoProviderError):
        pipeline.get_context()


def test_a_mistyped_plugin_name_gets_the_closest_installed_one(
    entry_points: dict[str, str],
) -> None:
    """Naming a plugin that is not installed suggests the closest installed name."""
    with pytest.raises(ConfigurationError, match=r"did you mean 'plain'\?"):
        AuthPipeline(origins=[ORIGIN], plugins=["plian"])


def test_a_missing_bundled_plugin_gets_an_install_command_that_works(
    entry_points: dict[str, str],
) -> None:
    """A bundled plugin that is not installed (or a typo of one) gets the pip command for its
    folder in this checkout: the plugins are on no package index."""
    for name in ("jwt", "statik"):
        with pytest.raises(ConfigurationError) as caught:
            AuthPipeline(origins=[ORIGIN], plugins=[name])
        message = str(caught.value)
        assert "pip install asapp-auth-" not in message
        folder = re.search(r"pip install (\./plugins/asapp-auth-\w+)$", message)
        assert folder is not None, message
        assert (Path(folder[1]) / "pyproject.toml").is_file()
    assert "did you mean 'static'? It is not installed" in message


def test_an_installed_plugin_left_out_of_the_allow_list_is_said_not_allowed(
    entry_points: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ASAPP_AUTH_PLUGINS, an installed plugin the list leaves out is reported as not
    allowed, by that variable, rather than as not installed."""
    monkeypatch.setenv("ASAPP_AUTH_PLUGINS", "plain")
    with pytest.raises(ConfigurationError) as caught:
        AuthPipeline(origins=[ORIGIN], plugins=["good"])
    message = str(caught.value)
    assert "plugin 'good' is installed but not allowed" in message
    assert "ASAPP_AUTH_PLUGINS='plain' does not list it" in message
    assert "no installed plugin" not in message


def test_check_settings_refuses_non_mappings_and_unknown_keys() -> None:
    """check_settings names the plugin, the unknown keys and the known ones."""
    from asapp_auth.plugins import check_settings

    assert check_settings({"a": 1}, {"a", "b"}, "demo") == {"a": 1}
    with pytest.raises(ConfigurationError, match=r"^plugin 'demo': unknown setting 'c'; the"):
        check_settings({"c": 1}, {"a", "b"}, "demo")
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        check_settings(["a"], {"a"}, "demo")
