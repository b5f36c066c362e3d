"""``StaticTokenProvider``: the agreed context filled from a token that already exists."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from asapp_auth import AuthContext, Customer, hookimpl
from asapp_auth.errors import ConfigurationError, InvalidContextError, ProviderError
from asapp_auth.paths import setting_path
from asapp_auth.plugins import SettingsProblems, check_settings
from asapp_auth.secrets import read_secret_file, resolve_secret

__all__ = [
    "DEFAULT_TEMPLATE",
    "PLACEHOLDER",
    "SETTINGS",
    "StaticTokenProvider",
    "from_settings",
    "jwt_expiry",
]

ENTRY_POINT = "static"
PLUGIN = f"plugin {ENTRY_POINT!r}"
"""What starts every error message of this plugin, as of every plugin: ``plugin 'static'``."""
PLACEHOLDER = "{token}"
"""Replaced by the token wherever it appears in a string value of the template."""
DEFAULT_TEMPLATE: Mapping[str, Any] = {"Auth": {"Token": PLACEHOLDER}}
SETTINGS = frozenset({
    "token", "token_env", "token_file", "lifetime", "expiry_from_jwt", "template", "customers",
})  # fmt: skip
"""Every setting ``from_settings`` accepts."""

_log = logging.getLogger("asapp_auth_static")


def _fail(setting: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"{PLUGIN}: setting {setting!r} {problem}")


def _check_lifetime(lifetime: object) -> None:
    if lifetime is not None and (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, int | float)
        or not math.isfinite(lifetime)
        or lifetime <= 0
    ):
        raise _fail("lifetime", "must be a positive number of seconds")


def _check_customers(customers: object) -> frozenset[str] | None:
    if customers is None:
        return None
    if isinstance(customers, str) or not isinstance(customers, Iterable):
        raise _fail("customers", f"must be a list of customer ids, not {type(customers).__name__}")
    ids = frozenset(customers)
    if not ids or not all(isinstance(c, str) and c for c in ids):
        raise _fail("customers", "must be a non-empty list of non-empty str")
    return ids


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of ``token`` read without verifying it, or ``None`` when the token is
    not a JWT with a numeric ``exp``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)


def _render(template: Any, token: str) -> Any:
    if isinstance(template, Mapping):
        return {key: _render(value, token) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [_render(value, token) for value in template]
    if isinstance(template, str):
        return template.replace(PLACEHOLDER, token)
    return template


def _placeholders(template: Any) -> int:
    if isinstance(template, Mapping):
        return sum(_placeholders(value) for value in template.values())
    if isinstance(template, list | tuple):
        return sum(_placeholders(value) for value in template)
    return template.count(PLACEHOLDER) if isinstance(template, str) else 0


class StaticTokenProvider:
    """Answers ``provide_context`` with a token given as it is: a literal (``token``, which may
    be ``env:NAME`` or ``file:PATH``, read once), an environment variable (``token_env``, read
    once) or a file (``token_file``, watched).

    A watched file is read again when a refresh is asked (``needs_refresh=True``) and when its
    inode, size or modification time changed; otherwise only ``stat`` is called. The token is
    placed in ``template`` wherever ``{token}`` appears in a string value. The context expires
    after ``lifetime`` seconds, or at the token's own ``exp`` with ``expiry_from_jwt``, or never.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        token_env: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        lifetime: float | None = None,
        expiry_from_jwt: bool = False,
        template: Mapping[str, Any] | None = None,
        customers: Iterable[str] | None = None,
    ) -> None:
        given = {
            "token": token, "token_env": token_env, "token_file": token_file,
            "lifetime": lifetime, "expiry_from_jwt": expiry_from_jwt, "template": template,
            "customers": customers,
        }  # fmt: skip
        self._setup({name: value for name, value in given.items() if value is not None})

    @classmethod
    def _from_mapping(cls, settings: Mapping[str, Any]) -> StaticTokenProvider:
        """The provider for ``settings``, whose problems are reported in their order."""
        provider = cls.__new__(cls)
        provider._setup({name: value for name, value in settings.items() if value is not None})
        return provider

    def _setup(self, settings: Mapping[str, Any]) -> None:
        """Check every setting, raising all their problems at once, then read the token."""
        problems = SettingsProblems(ENTRY_POINT, settings)
        problems.unknown(settings, SETTINGS)
        given = [name for name in ("token", "token_env", "token_file") if name in settings]
        if len(given) != 1:
            problems.add(
                given[-1] if given else None,
                "give exactly one of the settings 'token', 'token_env' and 'token_file' "
                f"(given: {given or 'none'})",
            )
        lifetime = settings.get("lifetime")
        problems.check("lifetime", _check_lifetime, lifetime)
        expiry_from_jwt = settings.get("expiry_from_jwt", False)
        if not isinstance(expiry_from_jwt, bool):
            problems.add("expiry_from_jwt", "setting 'expiry_from_jwt' must be true or false")
        elif lifetime is not None and expiry_from_jwt:
            problems.add("expiry_from_jwt", "give 'lifetime' or 'expiry_from_jwt', not both")
        self._lifetime = None if lifetime is None else float(lifetime)
        self._expiry_from_jwt = expiry_from_jwt is True
        template = settings.get("template", DEFAULT_TEMPLATE)
        self._template = problems.check("template", self._check_template, template) or {}
        self._customers = problems.check("customers", _check_customers, settings.get("customers"))

        self._lock = threading.Lock()
        self._path: str | None = None
        self._stat: tuple[int, int, int, int] | None = None
        self._source = ""
        if len(given) == 1:
            problems.check(given[0], self._read_setting, given[0], settings[given[0]])
        if not problems.failed():
            problems.check(given[0], self._prepare_first)
        problems.raise_any()

    def _read_setting(self, name: str, value: Any) -> None:
        """Read the token from the one setting that gives it."""
        if name == "token_file":
            if not isinstance(value, str | os.PathLike) or not os.fspath(value):
                raise _fail("token_file", "must be a path")
            # Relative to the configuration file that names it, when one does.
            self._path = setting_path(value)
            self._source = f"the token in file {self._path!r}"
            self._token = self._read_file(at_configuration=True)
        elif name == "token_env":
            if not isinstance(value, str) or not value:
                raise _fail("token_env", "must name an environment variable")
            self._source = f"the token in environment variable {value!r}"
            self._token = resolve_secret(
                f"env:{value}", setting="token_env", plugin=ENTRY_POINT
            ).strip()
        else:
            self._source = "the token of setting 'token'"
            self._token = resolve_secret(value, setting="token", plugin=ENTRY_POINT).strip()

    def _prepare_first(self) -> None:
        self._token, self._exp, self._data = self._prepare(self._token, at_configuration=True)

    @staticmethod
    def _check_template(template: object) -> Mapping[str, Any]:
        if not isinstance(template, Mapping) or not template:
            raise _fail("template", "must be a non-empty mapping, such as "
                        "{'Auth': {'Token': '{token}'}}")  # fmt: skip
        if _placeholders(template) == 0:
            raise _fail(
                "template",
                f"never uses the token: put {PLACEHOLDER!r} in at least one string value",
            )
        try:
            json.dumps(template)
        except (TypeError, ValueError):
            problem = "must hold only JSON values (dicts, lists, str, numbers)"
            raise _fail("template", problem) from None
        return template

    def _prepare(
        self, token: str, *, at_configuration: bool
    ) -> tuple[str, float | None, Mapping[str, Any]]:
        """Check ``token`` against the settings; its exp and the context dictionary it gives."""
        exp: float | None = None
        if self._expiry_from_jwt:
            exp = jwt_expiry(token)
            if exp is None:
                self._raise(
                    f"{self._source} is not a JWT with a numeric exp claim, but "
                    "'expiry_from_jwt' is set; give 'lifetime' instead, or a JWT",
                    at_configuration,
                )
            elif exp <= time.time():
                self._raise(f"{self._source} expired at exp={exp:.0f}; {self._what_to_do()}",
                            at_configuration)  # fmt: skip
        data = _render(self._template, token)
        try:
            AuthContext(data, source=f"{PLUGIN} (setting 'template')")
        except InvalidContextError as exc:
            self._raise(f"the context made from 'template' and {self._source} is invalid: {exc}",
                        at_configuration)  # fmt: skip
        return token, exp, data

    def _what_to_do(self) -> str:
        if self._path is not None:
            return "the file was not rotated: check what writes it"
        return "replace the token"

    def _raise(self, problem: str, at_configuration: bool) -> NoReturn:
        if at_configuration:
            raise ConfigurationError(f"{PLUGIN}: {problem}")
        raise ProviderError(f"{PLUGIN}: {problem}", plugin=ENTRY_POINT)

    def _read_file(self, *, at_configuration: bool) -> str:
        """Read the token file and remember its identity. Call with the lock held (or in
        ``__init__``)."""
        assert self._path is not None
        try:
            if at_configuration:
                raw = read_secret_file(self._path, setting="token_file", plugin=ENTRY_POINT)
            else:
                with open(self._path, "rb") as handle:
                    raw = handle.read()
            stat = os.stat(self._path)
        except OSError as exc:
            raise ProviderError(
                f"{PLUGIN}: the token file {self._path!r} cannot be read "
                f"({type(exc).__name__}); check what writes it",
                plugin=ENTRY_POINT,
            ) from None
        try:
            token = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            token = ""
        if not token:
            self._raise(f"the token file {self._path!r} is empty or not UTF-8 text",
                        at_configuration)  # fmt: skip
        self._stat = (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns)
        return token

    def _current(self, needs_refresh: bool) -> tuple[float | None, Mapping[str, Any]]:
        if self._path is None:
            return self._exp, self._data
        with self._lock:
            try:
                stat = os.stat(self._path)
            except OSError as exc:
                raise ProviderError(
                    f"{PLUGIN}: the token file {self._path!r} is gone ({type(exc).__name__}); "
                    "check what writes it",
                    plugin=ENTRY_POINT,
                ) from None
            identity = (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns)
            if needs_refresh or identity != self._stat:
                reason = "a refresh was asked" if needs_refresh else "it changed"
                _log.debug("re-reading token file %s (%s)", self._path, reason)
                token = self._read_file(at_configuration=False)
                self._token, self._exp, self._data = self._prepare(token, at_configuration=False)
            return self._exp, self._data

    @hookimpl
    def provide_context(self, customer: Customer, needs_refresh: bool) -> AuthContext | None:
        """The context holding the token, or ``None`` for a customer not served."""
        if self._customers is not None and customer.id not in self._customers:
            return None
        exp, data = self._current(needs_refresh)
        if self._lifetime is not None:
            return AuthContext(data, expires_in=self._lifetime, source=PLUGIN)
        if exp is not None:
            if exp <= time.time():
                raise ProviderError(
                    f"{PLUGIN}: {self._source} expired at exp={exp:.0f}; {self._what_to_do()}",
                    plugin=ENTRY_POINT,
                    customer_id=customer.id,
                )
            return AuthContext(data, expires_at=exp, source=PLUGIN)
        return AuthContext(data, source=PLUGIN)

    def __repr__(self) -> str:
        source = f"file={self._path!r}" if self._path is not None else self._source
        return f"StaticTokenProvider({source})"


def from_settings(settings: Mapping[str, Any]) -> StaticTokenProvider:
    """The plugin object for a pipeline's ``static`` settings (see the README for each one).

    Every problem of the settings is reported at once, in the order the settings were given.
    """
    if not isinstance(settings, Mapping):
        check_settings(settings, SETTINGS, ENTRY_POINT)  # refuses it, saying why
    return StaticTokenProvider._from_mapping(settings)
