"""The front door: ``check`` fails where a pipeline would, file paths, encodings, exit codes."""

from __future__ import annotations

import json
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from asapp_auth import AuthPipeline, hookimpl
from asapp_auth.cli import main
from asapp_auth.config import check_config, load_config
from asapp_auth.errors import ConfigurationError

ORIGINS = 'origins = ["https://api.chat.example"]\n'


class Expird:
    """A provider plugin whose notification hook is misspelt: no pipeline can register it."""

    @hookimpl
    def provide_context(self, customer: Any) -> dict[str, Any]:
        return {"Auth": {"Token": "never-used"}}

    @hookimpl
    def on_token_expird(self) -> None:
        return None


@pytest.fixture
def expird(monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed plugin ``expird``, beside the real ones, whose factory gives ``Expird``."""
    module = types.ModuleType("fake_expird_plugin")
    module.from_settings = lambda settings: Expird()  # type: ignore[attr-defined]
    module.Expird = Expird  # type: ignore[attr-defined]
    module.__all__ = ["Expird"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_expird_plugin", module)
    fake = metadata.EntryPoint("expird", "fake_expird_plugin", "asapp_auth")
    real = metadata.entry_points

    def entry_points(**select: Any) -> Any:
        found = real(**select)
        return [*found, fake] if select.get("group") == "asapp_auth" else found

    monkeypatch.setattr("asapp_auth.plugins.metadata.entry_points", entry_points)
    monkeypatch.delenv("ASAPP_AUTH_PLUGINS", raising=False)
    return "expird"


class _Service(BaseHTTPRequestHandler):
    """A session service for the example plugin that answers every POST with ``status``."""

    status = 500
    hits: list[str]

    def do_POST(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = b"<html>down for maintenance</html>"
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def service() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on 127.0.0.1 playing the example plugin's session service."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    server.status = 500  # type: ignore[attr-defined]
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _example_config(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("asapp_auth_example")
    monkeypatch.setenv("EXAMPLE_API_KEY", "s3cr3t-api-key")
    path = tmp_path / "asapp-auth.toml"
    path.write_text(
        f'{ORIGINS}[plugins.example]\nsession_url = "{url}"\napi_key = "env:EXAMPLE_API_KEY"\n'
    )
    return path


def test_check_fails_where_the_pipeline_fails_on_a_misspelt_hook(
    expird: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configured plugin with a misspelt hook makes check fail (exit 2) naming the plugin and
    the closest hook, as context does, instead of saying ok."""
    path = tmp_path / "asapp-auth.toml"
    path.write_text(f"{ORIGINS}[plugins.{expird}]\n")
    assert main(["check", "--config", str(path)]) == 2
    out = capsys.readouterr().out
    assert "plugins.expird: 'on_token_expird' is marked @hookimpl but no hook" in out
    assert "did you mean 'on_token_expired'?" in out
    assert main(["context", "--config", str(path), "--customer", "alice"]) == 2
    assert "'on_token_expird'" in capsys.readouterr().err


def test_plugins_command_flags_unknown_hook_names(
    expird: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """asapp-auth plugins marks a plugin whose class has a misspelt hook as broken, exit 1."""
    assert main(["plugins"]) == 1
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("expird")]
    assert "BROKEN: Expird: 'on_token_expird' is marked @hookimpl" in line
    assert main(["plugins", "--json"]) == 1
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["name"] == "expird"]
    assert row["error"] is None
    assert any("on_token_expired" in problem for problem in row["problems"])


def test_check_finds_what_only_the_pipeline_refused(tmp_path: Path) -> None:
    """A setting the pipeline refuses (a refresh share of 1) is a problem for check too."""
    path = tmp_path / "asapp-auth.toml"
    path.write_text(f"{ORIGINS}[cache]\nrefresh_ahead_fraction = 1\n")
    with pytest.raises(ConfigurationError):
        AuthPipeline.from_config(path)
    (problem,) = check_config(path)
    assert problem.startswith("cache.refresh_ahead_fraction: expected a share of the lifetime")


def test_check_contacts_nothing(
    service: ThreadingHTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check configures and registers a plugin without making a single request."""
    path = _example_config(tmp_path, f"http://127.0.0.1:{service.server_port}/s", monkeypatch)
    assert main(["check", "--config", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert service.hits == []  # type: ignore[attr-defined]


def test_a_plugin_left_out_by_the_allow_list_is_said_not_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ASAPP_AUTH_PLUGINS=static, check says an installed jwt plugin is not allowed, by
    that variable, instead of "no installed plugin of that name"."""
    pytest.importorskip("asapp_auth_jwt")
    monkeypatch.setenv("ASAPP_AUTH_PLUGINS", "static")
    path = tmp_path / "asapp-auth.toml"
    path.write_text(f'{ORIGINS}[plugins.jwt]\nkeys = ["key.pem"]\n')
    (problem,) = check_config(path)
    assert problem.startswith("plugins.jwt: plugin 'jwt' is installed but not allowed")
    assert "ASAPP_AUTH_PLUGINS='static' does not list it" in problem


def test_a_mistyped_plugin_table_gets_the_closest_name(tmp_path: Path) -> None:
    """[plugins.statik] suggests static, without a pip command for a package that does not
    exist."""
    pytest.importorskip("asapp_auth_static")
    path = tmp_path / "asapp-auth.toml"
    path.write_text(f'{ORIGINS}[plugins.statik]\ntoken = "x"\n')
    (problem,) = check_config(path)
    assert "did you mean 'static'?" in problem
    assert "pip install" not in problem


def test_a_config_file_that_is_not_utf8_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Latin-1 file makes check exit 2 with one line naming the file, not a traceback."""
    path = tmp_path / "asapp-auth.toml"
    path.write_bytes(ORIGINS.encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_config(path)
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"asapp-auth: ConfigurationError: {path}: not UTF-8 text")
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_check_exit_codes_are_the_same_for_a_missing_file_and_no_file_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """check --config on a missing file and check with no file to be found both exit 2."""
    assert main(["check", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: cannot be read" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 2
    assert "no asapp-auth.toml" in capsys.readouterr().err


@pytest.mark.parametrize("status", [500, 404], ids=["endpoint-html-500", "session-gone"])
def test_context_exits_1_for_run_time_failures(
    status: int,
    service: ThreadingHTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A provider endpoint answering HTML or saying the session is gone is a run-time failure of
    context (exit 1), not a usage or configuration error (exit 2)."""
    service.status = status  # type: ignore[attr-defined]
    path = _example_config(tmp_path, f"http://127.0.0.1:{service.server_port}/s", monkeypatch)
    assert main(["context", "--config", str(path), "--customer", "alice"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("asapp-auth: ")
    assert "s3cr3t" not in err
    assert service.hits  # type: ignore[attr-defined]


def test_context_exits_1_when_the_endpoint_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An endpoint nobody listens on is a run-time failure: exit 1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    port = server.server_port
    server.server_close()  # the port is free again: nothing answers there
    path = _example_config(tmp_path, f"http://127.0.0.1:{port}/s", monkeypatch)
    assert main(["context", "--config", str(path), "--customer", "alice"]) == 1
    assert "could not be reached" in capsys.readouterr().err


def test_relative_paths_are_taken_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """token_file and file: references written in a config file name files beside it, whatever
    the working folder, for check, context and from_config alike."""
    pytest.importorskip("asapp_auth_static")
    project = tmp_path / "project"
    (project / "secrets").mkdir(parents=True)
    (project / "secrets" / "token.txt").write_text("s3cr3t-file-token\n")
    path = project / "asapp-auth.toml"
    path.write_text(f'{ORIGINS}[plugins.static]\ntoken_file = "secrets/token.txt"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert check_config(path) == []
    pipeline = AuthPipeline.from_config(path)
    pipeline.load("alice")
    assert pipeline.get_context().token == "s3cr3t-file-token"  # type: ignore[union-attr]
    path.write_text(f'{ORIGINS}[plugins.static]\ntoken = "file:secrets/token.txt"\n')
    assert main(["context", "--config", str(path), "--customer", "alice"]) == 0
    assert "answered by static" in capsys.readouterr().out


def test_relative_key_files_of_a_shared_cache_are_taken_from_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cache.keys = ["file:cache.key"] reads the key beside the file; state_ttl is a setting."""
    pytest.importorskip("redis")
    from asapp_auth.sealing import generate_key

    (tmp_path / "cache.key").write_text(generate_key() + "\n")
    path = tmp_path / "asapp-auth.toml"
    path.write_text(
        f'{ORIGINS}[cache]\nbackend = "redis"\nurl = "redis://127.0.0.1:1/0"\n'
        'keys = ["file:cache.key"]\nstate_ttl = 600\n'
    )
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(path)
    cache = config.pipeline_kwargs()["cache"]
    assert cache._state_ttl == 600
    cache.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://user:hunter2@cache.internal:6379/0", "has scheme 'http://', which is not"),
        ("cache.internal:6379", "has no scheme"),
    ],
)
def test_a_bad_cache_url_says_what_is_wrong_and_exits_2(
    url: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache URL with the wrong or no scheme says which, shows no password, and exits 2."""
    pytest.importorskip("redis")
    path = tmp_path / "asapp-auth.toml"
    path.write_text(
        f'{ORIGINS}[cache]\nbackend = "redis"\nurl = "{url}"\nkeys = ["env:NO_SUCH_KEY_VAR"]\n'
    )
    assert main(["check", "--config", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"cache.url: {words}" in out
    assert "another" not in out
    assert "hunter2" not in out
    assert main(["context", "--config", str(path), "--customer", "a"]) == 2
    assert "hunter2" not in capsys.readouterr().err


def test_check_reports_every_problem_of_a_plugin_in_file_order(tmp_path: Path) -> None:
    """timeout = "ten" with max_retries = -1 (and a mistyped scope) are all reported, in the
    order of the file, each with what to do."""
    pytest.importorskip("asapp_auth_oauth2")
    path = tmp_path / "asapp-auth.toml"
    path.write_text(
        f"{ORIGINS}[plugins.oauth2]\n"
        'token_endpoint = "https://as.example/token"\nclient_id = "app"\n'
        'timeout = "ten"\nscopes = "read"\nmax_retries = -1\n'
    )
    problems = check_config(path)
    assert [problem.split(" (")[0] for problem in problems] == [
        "plugins.oauth2: setting 'timeout' must be a finite number, not str",
        "plugins.oauth2: unknown setting 'scopes'",
        "plugins.oauth2: setting 'max_retries' must be an int >= 0, got -1",
    ]
    assert "(did you mean 'scope'?)" in problems[1]


def test_an_unknown_core_setting_gets_the_closest_name(tmp_path: Path) -> None:
    """A mistyped key of the file itself is reported with the closest known setting, in the
    same words as a plugin's unknown setting."""
    path = tmp_path / "asapp-auth.toml"
    path.write_text(f"{ORIGINS}provider_timout = 5\n[cache]\nsise = 10\n")
    assert [problem.split(";")[0] for problem in check_config(path)] == [
        "provider_timout: unknown setting (did you mean 'provider_timeout'?)",
        "cache.sise: unknown setting (did you mean 'size'?)",
    ]


def test_relative_key_and_ca_paths_of_plugins_are_taken_from_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JWT plugin's key files and the OAuth2 plugin's CA bundle, written as relative paths,
    name files beside the configuration file."""
    pytest.importorskip("asapp_auth_jwt")
    pytest.importorskip("asapp_auth_oauth2")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    project = tmp_path / "project"
    (project / "keys").mkdir(parents=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (project / "keys" / "signing.pem").write_bytes(pem)
    path = project / "asapp-auth.toml"
    path.write_text(
        f'{ORIGINS}[plugins.jwt]\nkeys = ["keys/signing.pem"]\n'
        '[plugins.oauth2]\ntoken_endpoint = "https://as.example/token"\nclient_id = "app"\n'
        'verify = "ca/bundle.pem"\n'
    )
    monkeypatch.chdir(tmp_path)
    (problem,) = check_config(path)
    assert problem.startswith("plugins.oauth2: setting 'verify' names ")
    assert repr(str(project / "ca" / "bundle.pem")) in problem
