"""Configuration files: finding, validating, building pipelines; the check and context commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapp_auth import AuthPipeline, ContextHeader
from asapp_auth.cli import main
from asapp_auth.config import check_config, find_config, load_config
from asapp_auth.errors import ConfigurationError

GOOD = """
origins = ["https://api.chat.example"]
provider_timeout = 10
login_timeout = 5
[cache]
size = 50
expiry_margin = 2
refresh_ahead = 20
refresh_ahead_fraction = 0.2
[attach]
mode = "header"
header = "X-Ctx"
[plugins.static]
token_env = "CHAT_TOKEN"
lifetime = 300
"""

BAD = """
origins = "https://x"
provider_timeout = -1
colour = "blue"
[cache]
size = 0
expiry_margin = "soon"
[attach]
mode = "soap"
[plugins]
static = 3
"""


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    """A platform token in CHAT_TOKEN, as a deployment would give it."""
    value = "tok-s3cr3t-config"
    monkeypatch.setenv("CHAT_TOKEN", value)
    return value


def test_a_file_becomes_pipeline_settings(tmp_path: Path) -> None:
    """Every key of a good file lands in the pipeline's keyword arguments."""
    (tmp_path / "asapp-auth.toml").write_text(GOOD)
    config = load_config(tmp_path / "asapp-auth.toml")
    kwargs = config.pipeline_kwargs()
    assert kwargs["origins"] == ["https://api.chat.example"]
    assert kwargs["plugins"] == {"static": {"token_env": "CHAT_TOKEN", "lifetime": 300}}
    assert kwargs["provider_timeout"] == 10
    assert kwargs["cache_size"] == 50
    assert kwargs["refresh_ahead_fraction"] == 0.2
    assert isinstance(kwargs["attach"], ContextHeader)


def test_every_problem_is_reported_with_file_and_key_path(tmp_path: Path) -> None:
    """A bad file raises once, naming the file and each key path with what was expected."""
    path = tmp_path / "asapp-auth.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    for words in (
        "colour: unknown setting",
        "origins: expected a list of strings",
        "provider_timeout: expected a number of seconds",
        "cache.size: expected a whole number",
        "cache.expiry_margin: expected a number of seconds",
        'attach.mode: expected "map" or "header"',
        "plugins.static: expected a table of settings",
    ):
        assert words in message


def test_pyproject_table_and_search_upwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[tool.asapp-auth] in pyproject.toml is found from a subfolder; key paths are prefixed."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.asapp-auth]\norigins = ["https://a.example"]\nx = 1\n'
    )
    inner = tmp_path / "src" / "app"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    assert find_config() == tmp_path / "pyproject.toml"
    with pytest.raises(ConfigurationError, match=r"tool\.asapp-auth\.x: unknown setting"):
        load_config()
    (tmp_path / "pyproject.toml").write_text("[tool.black]\n")
    with pytest.raises(ConfigurationError, match=r"no asapp-auth\.toml"):
        find_config()


def test_unreadable_and_invalid_files_are_clear(tmp_path: Path) -> None:
    """A missing file and broken TOML give one clear error naming the file."""
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("origins = [")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_config(tmp_path / "broken.toml")


def test_pipeline_from_config_uses_the_configured_plugin(tmp_path: Path, token: str) -> None:
    """AuthPipeline.from_config builds a working pipeline; the plugin resolves its env secret."""
    pytest.importorskip("asapp_auth_static")
    (tmp_path / "asapp-auth.toml").write_text(GOOD)
    pipeline = AuthPipeline.from_config(tmp_path / "asapp-auth.toml")
    pipeline.load("alice")
    context = pipeline.get_context()
    assert context is not None
    assert context.token == token
    assert pipeline.cached().plugin == "static"  # type: ignore[union-attr]


def test_a_missing_secret_is_named_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin secret from an unset variable fails at load time, naming the file and variable."""
    pytest.importorskip("asapp_auth_static")
    monkeypatch.delenv("CHAT_TOKEN", raising=False)
    (tmp_path / "asapp-auth.toml").write_text(GOOD)
    with pytest.raises(ConfigurationError, match="CHAT_TOKEN") as caught:
        AuthPipeline.from_config(tmp_path / "asapp-auth.toml")
    assert str(tmp_path) in str(caught.value)
    assert check_config(tmp_path / "asapp-auth.toml")[0].startswith("plugins.static:")


def test_check_command_reports_ok_or_each_problem(
    tmp_path: Path, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """check exits 0 with ok for a good file, 2 with one line per problem for a bad one."""
    pytest.importorskip("asapp_auth_static")
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD)
    bad.write_text(BAD + "\n[plugins.nosuch]\n")
    bad.write_text(BAD.replace("[plugins]\nstatic = 3", "[plugins.nosuch]"))
    assert main(["check", "--config", str(good)]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["check", "--config", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "7 problems" in out
    assert "plugins.nosuch: no installed plugin" in out


def test_context_command_shows_the_context_redacted(
    tmp_path: Path, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """context prints which plugin answered and the expiry, never the token; --json too."""
    pytest.importorskip("asapp_auth_static")
    path = tmp_path / "asapp-auth.toml"
    path.write_text(GOOD)
    assert main(["context", "--config", str(path), "--customer", "alice"]) == 0
    out = capsys.readouterr().out
    assert "answered by static" in out
    assert token not in out
    assert (
        main(["context", "--config", str(path), "--customer", "alice", "--json", "--refresh"]) == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["plugin"] == "static"
    assert row["context"] == {"Auth": {"Token": "<redacted>"}}
    assert row["expires_in"] == 300


def test_context_command_with_a_bad_file_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configuration error exits 2 with the problems on stderr and no traceback."""
    path = tmp_path / "asapp-auth.toml"
    path.write_text(BAD)
    assert main(["context", "--config", str(path), "--customer", "a"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asapp-auth: ConfigurationError:")
    assert "Traceback" not in err
