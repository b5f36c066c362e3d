"""Pipelines from a TOML file: ``asapp-auth.toml``, or ``[tool.asapp-auth]`` in ``pyproject.toml``.

```toml
origins = ["https://api.chat.example"]   # required
provider_timeout = 30                     # seconds
login_timeout = 120
max_context_bytes = 16384                 # the largest context accepted, sent or kept

[cache]
size = 10000
expiry_margin = 10
refresh_ahead = 60
refresh_ahead_fraction = 0.25
# backend = "redis"             # shared by every process on one Redis (asapp-auth[redis])
# url = "redis://127.0.0.1:6379/0"
# keys = ["env:ASAPP_AUTH_CACHE_KEY"]   # sealing keys, newest first
# namespace = "asapp-auth"
# cluster = false               # true: url is a node of a Redis Cluster (or cluster mode)
# front_ttl = 5                 # seconds a process serves its own copy
# lock_ttl = 30                 # the fleet's refresh lock; at least provider_timeout
# state_ttl = 86400             # seconds an entry's state outlives its context

[attach]
mode = "map"                  # or "header": the whole context as JSON in one header
header = "X-Asapp-Context"    # with mode = "header"

[plugins.static]              # one table per provider plugin, asked in this order
token_env = "CHAT_TOKEN"
```

Secrets are never required inline: plugin settings take ``env:NAME`` and ``file:PATH``
references (see ``asapp_auth.secrets``). A relative path in the file (``file:PATH``, a
``token_file``, a key file) is taken from the file's own folder (see ``asapp_auth.paths``). Every
problem is reported at once, each with the file, the key path and what was expected.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._checks import redis_url_problem
from ._hints import unknown_setting
from .attach import ContextHeader
from .errors import AsappAuthError, ConfigurationError
from .origins import parse_origins
from .paths import relative_to
from .plugins import discover, get_plugin_manager, load_plugin

if TYPE_CHECKING:
    import pluggy

__all__ = ["Config", "check_config", "check_file", "find_config", "load_config"]

FILE_NAME = "asapp-auth.toml"

_TOP = {
    "origins",
    "provider_timeout",
    "login_timeout",
    "max_context_bytes",
    "cache",
    "attach",
    "plugins",
}
_CACHE = {"size", "expiry_margin", "refresh_ahead", "refresh_ahead_fraction", "backend"}
_REDIS = {
    "url", "keys", "namespace", "cluster", "front_ttl", "lock_ttl", "state_ttl", "timeout",
    "retry_after",
}  # fmt: skip
_ATTACH = {"mode", "header"}
_POSITIVE = {"front_ttl", "lock_ttl", "timeout"}  # as RedisContextCache checks them


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

    @property
    def folder(self) -> Path:
        """The folder of the file: relative paths in its settings are taken from here."""
        return Path(self.source).parent


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
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded); TOML files are UTF-8: "
            "save it in that encoding"
        ) from None


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
    # Building a shared cache reads its key files: relative to this file, as every path in it.
    with relative_to(file.resolve().parent):
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

    The pipeline's settings are checked by building one (without plugins), and each plugin is
    configured and registered as a pipeline would do it, so a missing environment variable or
    key file, or a misspelt hook, is found here too. Nothing is contacted over the network, and
    the plugins built are released (``on_pipeline_closed``) before it returns.
    """
    try:
        return check_file(path)[1]
    except ConfigurationError as exc:
        return [str(exc)]


def check_file(path: str | Path | None = None) -> tuple[str, list[str]]:
    """The file ``check_config`` checks (found when not given) and its problems.

    Raises ``ConfigurationError`` when there is no file to check: none found, unreadable, not
    UTF-8, not TOML, or a ``pyproject.toml`` without ``[tool.asapp-auth]``.
    """
    from .pipeline import AuthPipeline  # noqa: PLC0415 - the pipeline reads this module

    config, problems = _parse(path)
    with relative_to(config.folder):
        if not problems:
            problems += _pipeline_problems(config)
        # The plugins are built for real (an HTTP client, a worker thread): a pipeline of their
        # own releases them when it closes, as an app's would.
        with AuthPipeline((), plugin_manager=get_plugin_manager()) as holder:
            problems += _plugin_problems(config, holder.plugin_manager)
    return config.source, problems


def _pipeline_problems(config: Config) -> list[str]:
    from .pipeline import AuthPipeline  # noqa: PLC0415 - the pipeline reads this module

    try:
        AuthPipeline(**{**config.pipeline_kwargs(), "plugins": ()})
    except AsappAuthError as exc:
        return [str(exc)]
    return []


def _plugin_problems(config: Config, manager: pluggy.PluginManager) -> list[str]:
    """Each configured plugin's problems, plugin by plugin in file order; the plugins that load
    are registered on ``manager``."""
    installed = {info.name: info for info in discover()}
    found: dict[str, list[str]] = {}
    # Registered in the pipeline's order (the reverse of the file's), reported in the file's.
    for name, settings in reversed(config.plugins.items()):
        try:
            load_plugin(manager, name, settings, installed)
        except AsappAuthError as exc:
            prefix = f"plugin {name!r}: "
            listed = getattr(exc, "problems", None) or [str(exc)]
            found[name] = [problem.removeprefix(prefix) for problem in listed]
    where = "tool.asapp-auth." if Path(config.source).name == "pyproject.toml" else ""
    return [f"{where}plugins.{name}: {p}" for name in config.plugins for p in found.get(name, [])]


def _seconds(value: object, key: str, problems: list[str], *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):  # type: ignore[operator]
        least = "above 0" if positive else "0 or more"
        problems.append(f"{key}: expected a number of seconds, {least}; got {value!r}")
        return 0.0
    return float(value)  # type: ignore[arg-type]


def _unknown(table: Mapping[str, Any], known: set[str], where: str, problems: list[str]) -> None:
    for key in table:
        if key not in known:
            problems.append(f"{where}{key}: {unknown_setting(key, known, named=False)}")


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
    problem = None if url is None else redis_url_problem(url)
    if problem is not None:
        problems.append(f"{where}url: {problem}")
    if keys is not None and (
        not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys)
    ):
        problems.append(
            f'{where}keys: expected a list of key references, e.g. ["env:ASAPP_AUTH_CACHE_KEY"]'
        )
    if "namespace" in cache:
        options["namespace"] = cache["namespace"]
    if "cluster" in cache:
        if not isinstance(cache["cluster"], bool):
            problems.append(f"{where}cluster: expected true or false; got {cache['cluster']!r}")
        else:
            options["cluster"] = cache["cluster"]
    for key in ("front_ttl", "lock_ttl", "state_ttl", "timeout", "retry_after"):
        if key in cache:
            options[key] = _seconds(
                cache[key], f"{where}{key}", problems, positive=key in _POSITIVE
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
    if "max_context_bytes" in table:
        limit = table["max_context_bytes"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            problems.append(
                f"{where}max_context_bytes: expected a whole number of bytes above 0; got {limit!r}"
            )
        else:
            settings["max_context_bytes"] = limit
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
    if settings.get("refresh_ahead_fraction", 0) >= 1:
        problems.append(
            f"{where}cache.refresh_ahead_fraction: expected a share of the lifetime, below 1; "
            f"got {cache['refresh_ahead_fraction']!r}"
        )
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
