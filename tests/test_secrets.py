"""asapp_auth.secrets: secret references resolved at configuration time, and never shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from asapp_auth.errors import ConfigurationError
from asapp_auth.secrets import Secret, read_secret_file, resolve_secret

VALUE = "s3cr3t-value-for-tests"
ENV = "ASAPP_TEST_SECRETS_VALUE"


def _resolve(value: object) -> str:
    return resolve_secret(value, setting="api_key", plugin="demo")


def _refused(value: object) -> str:
    """The message of the ConfigurationError that resolving ``value`` raises."""
    with pytest.raises(ConfigurationError) as info:
        _resolve(value)
    message = str(info.value)
    assert message.startswith("plugin 'demo': setting 'api_key'")
    assert "s3cr3t" not in message
    return message


def test_plain_value_is_the_secret_itself() -> None:
    """A str that is not a reference is returned unchanged, whitespace and all."""
    assert _resolve(VALUE) == VALUE
    assert _resolve(f" {VALUE}\n") == f" {VALUE}\n"
    assert _resolve(f"http:{VALUE}") == f"http:{VALUE}"


def test_env_reference_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """env:NAME gives the environment variable's value, unchanged."""
    monkeypatch.setenv(ENV, f"{VALUE}\n")
    assert _resolve(f"env:{ENV}") == f"{VALUE}\n"


def test_env_reference_is_read_when_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable is read once, when resolved; later changes do not alter the result."""
    monkeypatch.setenv(ENV, VALUE)
    resolved = _resolve(f"env:{ENV}")
    monkeypatch.setenv(ENV, "s3cr3t-changed-later")
    assert resolved == VALUE


def test_file_reference_drops_one_trailing_newline(tmp_path: Path) -> None:
    """file:PATH gives the file's text without one trailing LF or CRLF, and no more."""
    path = tmp_path / "secret"
    path.write_bytes(f"{VALUE}\n".encode())
    assert _resolve(f"file:{path}") == VALUE
    path.write_bytes(f"{VALUE}\r\n".encode())
    assert _resolve(f"file:{path}") == VALUE
    path.write_bytes(f"{VALUE}\n\n".encode())
    assert _resolve(f"file:{path}") == f"{VALUE}\n"
    path.write_bytes(f" {VALUE} ".encode())
    assert _resolve(f"file:{path}") == f" {VALUE} "


def test_file_reference_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file: path starting with ~ is read from the user's home directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "secret").write_text(VALUE)
    assert _resolve("file:~/secret") == VALUE


def test_literal_prefix_escapes_the_other_forms() -> None:
    """literal:VALUE gives VALUE, even when it looks like a reference."""
    assert _resolve(f"literal:env:{VALUE}") == f"env:{VALUE}"
    assert _resolve(f"literal:file:{VALUE}") == f"file:{VALUE}"
    assert _resolve(f"literal:literal:{VALUE}") == f"literal:{VALUE}"
    assert _resolve(f"literal:{VALUE}") == VALUE


def test_secret_value_is_revealed_as_given() -> None:
    """A Secret is its value: no reference in it is followed."""
    assert _resolve(Secret(VALUE)) == VALUE
    assert _resolve(Secret(f"env:{VALUE}")) == f"env:{VALUE}"


@pytest.mark.parametrize(
    ("value", "described"),
    [(None, "None"), (12345, "an int"), (b"s3cr3t-bytes", "bytes"), (["s3cr3t"], "a list")],
)
def test_a_value_that_is_not_a_str_is_refused_by_type(value: object, described: str) -> None:
    """A value of another type is refused, described by its type with the right article (never
    "a int" or "NoneType") and never quoted."""
    message = _refused(value)
    assert message.endswith(f"), not {described}")
    assert "12345" not in message


def test_an_empty_str_is_refused() -> None:
    """The empty string is refused, saying the forms a secret may take."""
    message = _refused("")
    assert "must be a non-empty str" in message
    assert "'env:NAME'" in message
    assert "'file:PATH'" in message


@pytest.mark.parametrize("value", ["   ", "\n", "literal:", "literal:  ", Secret(""), Secret(" ")])
def test_a_value_that_is_empty_once_resolved_is_refused(value: object) -> None:
    """A literal or Secret that is empty, or only whitespace, is refused."""
    assert "is empty" in _refused(value)


def test_missing_env_var_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset variable is refused; the message names the plugin, setting and variable."""
    monkeypatch.delenv(ENV, raising=False)
    message = _refused(f"env:{ENV}")
    assert f"environment variable {ENV!r}, which is not set" in message


@pytest.mark.parametrize("content", ["", "  ", "\n"])
def test_empty_env_var_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, content: str) -> None:
    """A variable that is set but empty, or only whitespace, is refused, naming it."""
    monkeypatch.setenv(ENV, content)
    assert f"environment variable {ENV!r}, which is empty" in _refused(f"env:{ENV}")


def test_references_without_a_name_are_refused() -> None:
    """env: without a variable name and file: without a path are refused."""
    assert "without a variable name" in _refused("env:")
    assert "without a path" in _refused("file:")


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A file that cannot be read is refused; the message names the path and the cause."""
    path = tmp_path / "missing"
    message = _refused(f"file:{path}")
    assert f"file {str(path)!r} cannot be read (FileNotFoundError" in message
    assert f"file {str(tmp_path)!r} cannot be read" in _refused(f"file:{tmp_path}")


@pytest.mark.parametrize("content", [b"", b"\n", b" \r\n\t"])
def test_empty_file_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    """A file that is empty, or only whitespace, is refused, naming the path."""
    path = tmp_path / "empty"
    path.write_bytes(content)
    assert f"file {str(path)!r} is empty" in _refused(f"file:{path}")


def test_file_that_is_not_utf8_is_refused_without_quoting_it(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is refused, naming the path and never its content."""
    path = tmp_path / "binary"
    path.write_bytes(b"s3cr3t-\xff\xfe")
    assert f"file {str(path)!r} is not UTF-8 text" in _refused(f"file:{path}")


def test_error_without_a_plugin_starts_with_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no plugin given, the message starts by naming the setting."""
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigurationError, match=r"^setting 'token' names environment variable"):
        resolve_secret(f"env:{ENV}", setting="token")


def test_errors_are_configuration_errors_and_value_errors() -> None:
    """The error raised is ConfigurationError, which is also a ValueError."""
    with pytest.raises(ValueError, match="api_key"):
        _resolve(42)


def test_read_secret_file_gives_the_bytes_unchanged(tmp_path: Path) -> None:
    """read_secret_file returns the file's bytes as they are, trailing newline included."""
    path = tmp_path / "key.pem"
    path.write_bytes(b"s3cr3t\xff\n")
    assert read_secret_file(path, setting="key") == b"s3cr3t\xff\n"
    assert read_secret_file(str(path), setting="key") == b"s3cr3t\xff\n"


def test_read_secret_file_refuses_missing_and_empty_files(tmp_path: Path) -> None:
    """read_secret_file refuses a missing or blank file, naming plugin, setting and path."""
    missing, blank = tmp_path / "missing", tmp_path / "blank"
    blank.write_text("\n")
    with pytest.raises(
        ConfigurationError, match=r"^plugin 'p': setting 'key': file .*missing' cannot be"
    ):
        read_secret_file(missing, setting="key", plugin="p")
    with pytest.raises(
        ConfigurationError, match=r"^plugin 'p': setting 'key': file .*blank' is empty"
    ):
        read_secret_file(blank, setting="key", plugin="p")


def test_secret_repr_and_str_are_redacted() -> None:
    """repr, str and format of a Secret never show its value; reveal() does."""
    secret = Secret(VALUE)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])]
    assert all("s3cr3t" not in text and "<redacted>" in text for text in shown)
    assert secret.reveal() == VALUE


def test_secret_in_a_log_record_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """A Secret logged as an argument shows as redacted, so the log guard stays quiet."""
    with caplog.at_level(logging.INFO):
        logging.getLogger("asapp_auth.test").info("using %s and %r", Secret(VALUE), Secret(VALUE))
    assert "s3cr3t" not in caplog.text
    assert "<redacted>" in caplog.text


def test_secrets_compare_by_value() -> None:
    """Two Secrets with the same value are equal and hash alike; a Secret never equals a str."""
    assert Secret(VALUE) == Secret(VALUE)
    assert hash(Secret(VALUE)) == hash(Secret(VALUE))
    assert Secret(VALUE) != Secret("s3cr3t-other")
    assert Secret(VALUE) != VALUE


def test_secret_holds_only_a_str() -> None:
    """A Secret made from anything but a str is a TypeError that does not quote it."""
    with pytest.raises(TypeError, match="not bytes") as info:
        Secret(b"s3cr3t-bytes")  # type: ignore[arg-type]
    assert "s3cr3t" not in str(info.value)
