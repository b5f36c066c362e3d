"""Plugins built by ``check``, by ``context`` and by a pipeline that failed to configure are
released through ``on_pipeline_closed``, as a closed pipeline's are."""

from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from asapp_auth import AuthPipeline, get_plugin_manager, hookimpl
from asapp_auth.cli import main
from asapp_auth.config import check_config
from asapp_auth.errors import PluginError

ORIGINS = 'origins = ["https://api.chat.example"]\n'


class Holding:
    """A provider plugin that holds something until its pipeline closes."""

    def __init__(self) -> None:
        self.closed = 0

    @hookimpl
    def provide_context(self, customer: Any) -> dict[str, Any]:
        return {"Auth": {"Token": "held-token"}}

    @hookimpl
    def on_pipeline_closed(self, pipeline: AuthPipeline, deadline: float) -> None:
        self.closed += 1


class Expird:
    """A plugin whose hook is misspelt: it cannot be registered."""

    @hookimpl
    def on_token_expird(self) -> None:
        return None


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Holding]:
    """Installed plugins ``holding`` (each one built is recorded in the list returned) and
    ``expird``, beside the real ones."""
    made: list[Holding] = []

    def holding(settings: Any) -> Holding:
        made.append(Holding())
        return made[-1]

    fakes = []
    for name, factory in (("holding", holding), ("expird", lambda settings: Expird())):
        module = types.ModuleType(f"fake_{name}_plugin")
        module.from_settings = factory  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)
        fakes.append(metadata.EntryPoint(name, module.__name__, "asapp_auth"))
    real = metadata.entry_points

    def entry_points(**select: Any) -> Any:
        found = real(**select)
        return [*found, *fakes] if select.get("group") == "asapp_auth" else found

    monkeypatch.setattr("asapp_auth.plugins.metadata.entry_points", entry_points)
    monkeypatch.delenv("ASAPP_AUTH_PLUGINS", raising=False)
    return made


@pytest.mark.parametrize(
    ("settings", "problems"),
    [
        ("", 0),
        ("[cache]\nrefresh_ahead_fraction = 1\n", 1),  # a problem only the pipeline finds
        ("provider_timeout = -1\n", 1),  # a problem of the file itself
        ("[plugins.expird]\n", 1),  # another plugin that cannot be registered
    ],
)
def test_check_releases_every_plugin_it_builds(
    built: list[Holding], tmp_path: Path, settings: str, problems: int
) -> None:
    """check builds each configured plugin as a pipeline would, and releases it once, whatever
    else it finds."""
    path = tmp_path / "asapp-auth.toml"
    path.write_text(f"{ORIGINS}{settings}[plugins.holding]\n")
    assert len(check_config(path)) == problems
    assert [plugin.closed for plugin in built] == [1]


def test_the_check_command_releases_the_plugins_too(
    built: list[Holding], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """asapp-auth check says ok and leaves no plugin it built unreleased."""
    path = tmp_path / "asapp-auth.toml"
    path.write_text(f"{ORIGINS}[plugins.holding]\n")
    assert main(["check", "--config", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert [plugin.closed for plugin in built] == [1]


def test_the_context_command_closes_its_pipeline(
    built: list[Holding], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """asapp-auth context closes the pipeline it made once it has the context."""
    path = tmp_path / "asapp-auth.toml"
    path.write_text(f"{ORIGINS}[plugins.holding]\n")
    assert main(["context", "--config", str(path), "--customer", "alice"]) == 0
    assert "answered by holding" in capsys.readouterr().out
    assert [plugin.closed for plugin in built] == [1]


def test_a_pipeline_that_fails_to_configure_releases_the_plugins_it_built(
    built: list[Holding],
) -> None:
    """When a configured plugin cannot be registered, the ones already built are released and
    unregistered: the app gets no pipeline to close them with."""
    manager = get_plugin_manager()
    with pytest.raises(PluginError, match="'on_token_expird'"):
        # Registered last first: holding is built and registered before expird is refused.
        AuthPipeline(
            ["https://api.chat.example"], plugins=["expird", "holding"], plugin_manager=manager
        )
    assert [plugin.closed for plugin in built] == [1]
    assert manager.get_plugin("holding") is None
