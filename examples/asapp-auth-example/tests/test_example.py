"""The example plugin as an app uses it: installed, found by its entry point, configured by name,
and serving real requests to a fake platform on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import asapp_auth_example
import httpx
import pytest
from example_helpers import API_KEY, SessionService

from asapp_auth import AuthPipeline, Customer, discover, hookimpl
from asapp_auth.errors import (
    ConfigurationError,
    NoProviderError,
    ProviderError,
    ProviderTimeoutError,
)
from asapp_auth.plugins import hooks_of
from asapp_auth.testing import FakePlatform


@pytest.fixture
def pipelines() -> Iterator[list[AuthPipeline]]:
    """Pipelines made in a test, closed after it (the plugin closes its own HTTP client)."""
    made: list[AuthPipeline] = []
    yield made
    for pipeline in made:
        pipeline.close()


def configure(
    made: list[AuthPipeline], platform: FakePlatform, settings: dict[str, Any]
) -> AuthPipeline:
    pipeline = AuthPipeline(origins=[platform.origin], plugins={"example": settings})
    made.append(pipeline)
    return pipeline


def test_found_through_its_entry_point() -> None:
    """The installed distribution offers the module as entry point ``example`` of asapp_auth."""
    (entry,) = [ep for ep in metadata.entry_points(group="asapp_auth") if ep.name == "example"]
    assert entry.value == "asapp_auth_example"
    assert entry.dist is not None
    assert entry.dist.metadata["Name"] == "asapp-auth-example"
    assert entry.load() is asapp_auth_example
    info = {info.name: info for info in discover()}["example"]
    assert info.loaded
    assert hooks_of(info.plugin) == ["on_pipeline_closed", "provide_context"]


def test_context_from_the_service_is_attached_and_cached(
    platform: FakePlatform, service: SessionService, pipelines: list[AuthPipeline]
) -> None:
    """Requests carry the service's token for the customer; the service is asked once."""
    pipeline = configure(pipelines, platform, {"session_url": service.url, "api_key": API_KEY})
    pipeline.load(customer_id="alice")
    with httpx.Client(auth=pipeline) as client:
        first = client.get(f"{platform.url}/v1/account")
        second = client.get(f"{platform.url}/v1/account")
    assert first.json() == second.json() == {"customer": "alice"}
    context = pipeline.get_context()
    assert context is not None
    assert platform.received[-1].headers["Authorization"] == f"Bearer {context.token}"
    assert context.expires_in == 120  # the service's expires_in, not the default lifetime
    assert service.asked == [("alice", False)]


def test_rejection_asks_the_service_for_a_fresh_token(
    platform: FakePlatform, service: SessionService, pipelines: list[AuthPipeline]
) -> None:
    """When the platform rejects the token, the plugin is asked with needs_refresh and asks the
    service for a fresh token; the request is retried with it."""
    pipeline = configure(pipelines, platform, {"session_url": service.url, "api_key": API_KEY})
    pipeline.load(customer_id="alice")
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/v1/account").status_code == 200
        platform.expire()
        response = client.get(f"{platform.url}/v1/account")
    assert response.json() == {"customer": "alice"}
    assert service.asked == [("alice", False), ("alice", True)]
    rejected, retried = platform.requests_to("/v1/account")[1:]
    assert rejected.customer_id is None
    assert retried.customer_id == "alice"


def test_api_key_from_a_variable(
    platform: FakePlatform,
    service: SessionService,
    pipelines: list[AuthPipeline],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``api_key`` may name an environment variable, read when the pipeline is configured."""
    monkeypatch.setenv("SESSION_SERVICE_KEY", API_KEY)
    settings = {"session_url": service.url, "api_key": "env:SESSION_SERVICE_KEY"}
    pipeline = configure(pipelines, platform, settings)
    monkeypatch.delenv("SESSION_SERVICE_KEY")  # already resolved: the variable may go
    pipeline.load(customer_id="bob")
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "bob"}


def test_api_key_from_a_file(
    platform: FakePlatform, service: SessionService, pipelines: list[AuthPipeline], tmp_path: Path
) -> None:
    """``api_key`` may name a file (a mounted secret); its trailing newline is not the key."""
    (tmp_path / "key").write_text(f"{API_KEY}\n")
    settings = {"session_url": service.url, "api_key": f"file:{tmp_path / 'key'}"}
    pipeline = configure(pipelines, platform, settings)
    pipeline.load(customer_id="bob")
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "bob"}


def test_a_customer_without_a_session_is_asked_to_log_in(
    platform: FakePlatform, service: SessionService, pipelines: list[AuthPipeline]
) -> None:
    """A 404 from the service runs on_login_required; the request goes on once logged in."""
    service.sessions.clear()
    pipeline = configure(pipelines, platform, {"session_url": service.url, "api_key": API_KEY})

    class LoginScreen:
        def __init__(self) -> None:
            self.reasons: list[str] = []

        @hookimpl
        def on_login_required(self, customer: Customer | None, reason: str) -> bool:
            self.reasons.append(reason)
            service.sessions.add("alice")  # the customer logs in on the company's site
            pipeline.set_customer("alice")
            return True

    screen = LoginScreen()
    pipeline.register(screen)
    pipeline.load(customer_id="alice")
    with httpx.Client(auth=pipeline) as client:
        assert client.get(f"{platform.url}/v1/account").json() == {"customer": "alice"}
    assert screen.reasons == ["session_gone"]


def test_customers_it_does_not_serve_are_left_to_others(
    platform: FakePlatform, service: SessionService, pipelines: list[AuthPipeline]
) -> None:
    """With ``customers``, any other customer gets no answer from it (here: no provider at all)."""
    settings = {"session_url": service.url, "api_key": API_KEY, "customers": ["alice"]}
    pipeline = configure(pipelines, platform, settings)
    pipeline.load(customer_id="zoe")
    with pytest.raises(NoProviderError):
        pipeline.get_context()
    assert service.asked == []


def test_a_failing_service_is_a_provider_error_naming_the_plugin(
    platform: FakePlatform, service: SessionService, pipelines: list[AuthPipeline]
) -> None:
    """A service answering 503 fails the request with a ProviderError naming the plugin."""
    service.status = 503
    pipeline = configure(pipelines, platform, {"session_url": service.url, "api_key": API_KEY})
    pipeline.load(customer_id="alice")
    with httpx.Client(auth=pipeline) as client, pytest.raises(ProviderError) as caught:
        client.get(f"{platform.url}/v1/account")
    assert caught.value.plugin == "example"
    assert "plugin 'example': the session service" in str(caught.value)
    assert "HTTP 503" in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert platform.received == []  # nothing was sent without a context


def test_closing_the_pipeline_closes_the_plugins_client(service: SessionService) -> None:
    """Leaving ``with`` reaches on_pipeline_closed: the plugin's own HTTP client is closed."""
    settings = {"session_url": service.url, "api_key": API_KEY}
    with AuthPipeline(origins=["https://api.chat.example"], plugins={"example": settings}) as p:
        plugin = p.plugin_manager.get_plugin("example")
        assert not plugin._client.is_closed
    assert plugin._client.is_closed


def test_a_hanging_service_ends_at_the_pipelines_provider_timeout(
    platform: FakePlatform, service: SessionService, pipelines: list[AuthPipeline]
) -> None:
    """A service that does not answer costs provider_timeout, not the plugin's own timeout."""
    service.stalled.set()
    settings = {"session_url": service.url, "api_key": API_KEY, "timeout": 20}
    pipeline = AuthPipeline(
        origins=[platform.origin], plugins={"example": settings}, provider_timeout=0.5
    )
    pipelines.append(pipeline)
    pipeline.load(customer_id="alice")
    with pytest.raises(ProviderTimeoutError, match="did not answer within the pipeline's"):
        pipeline.get_context()
    assert service.asked == [("alice", False)]
    service.stalled.clear()
    service.released.set()
    assert pipeline.get_context() is not None  # the next request asks again


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"api_key": API_KEY}, "setting 'session_url' is missing"),
        ({"session_url": "https://s.example", "api_key": API_KEY, "lifetim": 60}, "lifetim"),
        ({"session_url": "ftp://s.example", "api_key": API_KEY}, "'session_url'"),
        ({"session_url": "https://s.example", "api_key": "env:NO_SUCH_KEY_VAR"}, "NO_SUCH_KEY"),
        ({"session_url": "https://s.example", "api_key": API_KEY, "lifetime": -1}, "'lifetime'"),
        ({"session_url": "https://s.example", "api_key": API_KEY, "customers": "al"}, "customers"),
    ],
)
def test_bad_settings_are_refused_naming_the_plugin(
    settings: dict[str, Any], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bad setting is a ConfigurationError at configuration time, naming the plugin and the
    setting, never holding the key."""
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        AuthPipeline(origins=["https://api.chat.example"], plugins={"example": settings})
    message = str(caught.value)
    assert message.startswith("plugin 'example': ")
    assert named in message
    assert API_KEY not in message


def test_every_problem_is_reported_at_once_in_the_order_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file with several bad settings gets one error listing each, in the file's order."""
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    settings = {
        "timeout": "ten",
        "lifetim": 60,
        "session_url": "ftp://s.example",
        "api_key": "env:NO_SUCH_KEY_VAR",
    }
    with pytest.raises(ConfigurationError) as caught:
        asapp_auth_example.from_settings(settings)
    problems = caught.value.problems
    assert [problem.split(" ")[0:3] for problem in problems] == [
        ["setting", "'timeout'", "must"],
        ["unknown", "setting", "'lifetim'"],
        ["setting", "'session_url'", "must"],
        ["setting", "'api_key'", "names"],
    ]
    assert str(caught.value).startswith("plugin 'example': 4 problems:")


def test_repr_never_shows_the_api_key(service: SessionService) -> None:
    """The plugin object's repr names the service, not the key."""
    plugin = asapp_auth_example.from_settings({"session_url": service.url, "api_key": API_KEY})
    try:
        assert API_KEY not in repr(plugin)
        assert service.url in repr(plugin)
    finally:
        plugin.close()
