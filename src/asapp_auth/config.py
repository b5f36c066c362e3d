"""Pipelines from a TOML file: ``asapp-auth.toml``, or ``[tool.asapp-auth]`` in ``pyproject.toml``.

```toml
origins = ["https://api.chat.example"]   # required
provider_timeout = 30                     # seconds
login_timeout = 120

[cache]
size = 10000
expiry_margin = 10
refresh_ahead = 60
refresh_ahead_fraction = 0.25
# backend = "redis"             # shared by every process on one Redis (asapp-auth[redis])
# url = "redis://127.0.0.1:6379/0"
# keys = ["env:ASAPP_AUTH_CACHE_KEY"]   # sealing keys, newest first
# namespace = "asapp-auth"
# front_ttl = 5                 # seconds a process serves its own copy
# lock_ttl = 30                 # the fleet's refresh lock; at least provider_timeout

[attach]
mode = "map"                  # or "header": the whole context as JSON in one header
header = "X-Asapp-Context"    # with mode = "header"

[plugins.static]              # one table per provider plugin, asked in this order
token_env = "CHAT_TOKEN"
```

Secrets are never required inline: plugin settings take ``env:NAME`` and ``file:PATH``
references (see ``asapp_auth.secrets``). Every problem is reported at once, each with the file,
the key path and what was expected.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .attach import ContextHeader
from .errors import AsappAuthError, ConfigurationError
from .origins import parse_origins
from .plugins import configure_plugin, discover

__all__ = ["Config", "check_config", "find_config", "load_config"]

FILE_NAME = "asapp-auth.toml"

_TOP = {"origins", "provider_timeout", "login_timeout", "cache", "attach", "plugins"}
_CACHE = {"size", "expiry_margin", "refresh_ahead", "refresh_ahead_fraction", "backend"}
_REDIS = {"url", "keys", "namespace", "front_ttl", "lock_ttl", "timeout", "retry_after"}
_ATTACH = {"mode", "header"}


@dataclass(frozen=True)
class Config:
    """A validated configuration, ready for ``AuthPipeline(**config.pipeline_kwargs())``."""

    source: str
    origins: list[str]
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AuthPipeline``."""
        return {"origins": self.origins, "plugins": self.plugins, **self.settings}


def find_config(start: Path | None = None) -> Path:
    """``asapp-auth.toml``, or a ``pyproject.toml`` with ``[tool.asapp-auth]``, in ``start`` or
    a parent folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / FILE_NAME
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "asapp-auth" in _read(pyproject).get("tool", {}):
            return pyproject
    raise ConfigurationError(
        f"no {FILE_NAME} (or pyproject.toml with [tool.asapp-auth]) in {here} or its parents; "
        "give the file with --config"
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML ({exc})") from None


def _parse(path: str | Path | None) -> tuple[Config, list[str]]:
    file = Path(path) if path is not None else find_config()
    document = _read(file)
    if file.name == "pyproject.toml":
        table = document.get("tool", {}).get("asapp-auth")
        if table is None:
            raise ConfigurationError(f"{file}: has no [tool.asapp-auth] table")
        where = "tool.asapp-auth."
    else:
        table, where = document, ""
    problems: list[str] = []
    return _validate(table, where, problems, str(file)), problems


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a configuration file (found with ``find_config`` when not given)."""
    config, problems = _parse(path)
    file = config.source
    if problems:
        raise ConfigurationError(
            f"{file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )
    return config


def check_config(path: str | Path | None = None) -> list[str]:
    """Every problem of a configuration, plugin settings included; an empty list when none.

    Plugin settings are checked by configuring each plugin, as a pipeline would, so a missing
    environment variable or key file is found here too.
    """
    try:
        config, problems = _parse(path)
    except ConfigurationError as exc:
        return [str(exc)]
    installed = {info.name: info for info in discover()}
    for name, settings in config.plugins.items():
        info = installed.get(name)
        if info is None:
            problems.append(
                f"plugins.{name}: no installed plugin of that name "
                f"(installed: {', '.join(sorted(installed)) or 'none'})"
            )
            continue
        try:
            configure_plugin(info, settings)
        except AsappAuthError as exc:
            problems.append(f"plugins.{name}: {exc}")
    return problems


def _seconds(value: object, key: str, problems: list[str], *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):  # type: ignore[operator]
        least = "above 0" if positive else "0 or more"
        problems.append(f"{key}: expected a number of seconds, {least}; got {value!r}")
        return 0.0
    return float(value)  # type: ignore[arg-type]


def _unknown(table: Mapping[str, Any], known: set[str], where: str, problems: list[str]) -> None:
    for key in sorted(set(table) - known):
        problems.append(f"{where}{key}: unknown key (known: {', '.join(sorted(known))})")


def _shared_cache(
    cache: Mapping[str, Any], where: str, settings: dict[str, Any], problems: list[str]
) -> None:
    """``backend = "redis"``: a ``RedisContextCache`` built (not connected) at load time."""
    backend = cache.get("backend", "memory")
    if backend not in ("memory", "redis"):
        problems.append(f'{where}backend: expected "memory" or "redis"; got {backend!r}')
        return
    given = sorted(set(cache) & _REDIS)
    if backend == "memory":
        problems.extend(f'{where}{key}: only with backend = "redis"' for key in given)
        return
    options: dict[str, Any] = {}
    before = len(problems)
    for key in ("url", "keys"):
        if key not in cache:
            problems.append(f'{where}{key}: required with backend = "redis"')
    url, keys = cache.get("url"), cache.get("keys")
    if url is not None and not isinstance(url, str):
        problems.append(f"{where}url: expected a redis:// URL string; got {type(url).__name__}")
    if keys is not None and (
        not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys)
    ):
        problems.append(
            f'{where}keys: expected a list of key references, e.g. ["env:ASAPP_AUTH_CACHE_KEY"]'
        )
    if "namespace" in cache:
        options["namespace"] = cache["namespace"]
    for key in ("front_ttl", "lock_ttl", "timeout", "retry_after"):
        if key in cache:
            options[key] = _seconds(
                cache[key], f"{where}{key}", problems, positive=key != "retry_after"
            )
    if len(problems) > before or url is None or keys is None:
        return
    try:
        from .redis_cache import RedisContextCache  # noqa: PLC0415 - the optional extra

        settings["cache"] = RedisContextCache(
            url, keys=keys, maxsize=settings.get("cache_size", 10_000), **options
        )
    except ConfigurationError as exc:
        # Its messages name the setting already ("cache.url ...", "setting 'cache.keys[0]' ...").
        problems.append(f"{where.removesuffix('cache.')}{exc}")


def _validate(table: Mapping[str, Any], where: str, problems: list[str], source: str) -> Config:
    _unknown(table, _TOP, where, problems)
    origins = table.get("origins")
    if origins is None:
        problems.append(
            f'{where}origins: required: the platform origins, e.g. ["https://api.chat.example"]'
        )
        origins = []
    elif not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        problems.append(f"{where}origins: expected a list of strings; got {origins!r}")
        origins = []
    else:
        try:
            parse_origins(origins)
        except ConfigurationError as exc:
            problems.append(f"{where}origins: {exc}")
    settings: dict[str, Any] = {}
    for key in ("provider_timeout", "login_timeout"):
        if key in table:
            settings[key] = _seconds(table[key], f"{where}{key}", problems, positive=True)
    cache = table.get("cache", {})
    if not isinstance(cache, Mapping):
        problems.append(f"{where}cache: expected a table; got {cache!r}")
        cache = {}
    _unknown(cache, _CACHE | _REDIS, f"{where}cache.", problems)
    if "size" in cache:
        size = cache["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append(f"{where}cache.size: expected a whole number above 0; got {size!r}")
        else:
            settings["cache_size"] = size
    for key in ("expiry_margin", "refresh_ahead", "refresh_ahead_fraction"):
        if key in cache:
            settings[key] = _seconds(cache[key], f"{where}cache.{key}", problems)
    _shared_cache(cache, f"{where}cache.", settings, problems)
    attach = table.get("attach", {})
    if not isinstance(attach, Mapping):
        problems.append(f"{where}attach: expected a table; got {attach!r}")
        attach = {}
    _unknown(attach, _ATTACH, f"{where}attach.", problems)
    mode = attach.get("mode", "map")
    if mode not in ("map", "header"):
        problems.append(f'{where}attach.mode: expected "map" or "header"; got {mode!r}')
    elif mode == "header":
        header = attach.get("header", "X-Asapp-Context")
        if not isinstance(header, str) or not header:
            problems.append(f"{where}attach.header: expected a header name; got {header!r}")
        else:
            settings["attach"] = ContextHeader(header)
    plugins = table.get("plugins", {})
    if not isinstance(plugins, Mapping):
        problems.append(f"{where}plugins: expected a table of plugin tables; got {plugins!r}")
        plugins = {}
    chosen: dict[str, dict[str, Any]] = {}
    for name, options in plugins.items():
        if not isinstance(options, Mapping):
            problems.append(f"{where}plugins.{name}: expected a table of settings; got {options!r}")
            continue
        chosen[name] = dict(options)
    return Config(source, list(origins), chosen, settings)
