"""asapp-auth: customer authentication for a chat platform's API, from the command line.

Exit codes:

- 0: success (for ``check``: the configuration has no problem);
- 1: the command ran and something failed at run time: ``context`` could not get a context
  (an endpoint down or answering nonsense, a refused client, a customer's session gone),
  ``plugins`` lists a broken plugin, a ``demo`` step misbehaved;
- 2: usage or configuration error: bad arguments, no configuration file found, a file that
  cannot be read or parsed, any problem ``check`` reports (the same ones ``context`` stops at),
  a plugin that is not installed or not allowed, a ``keygen --out`` file that exists.

Errors are one line on stderr, starting ``asapp-auth:``; ``--debug`` shows the traceback. Output
is plain text (``NO_COLOR`` is respected trivially: there is no colour).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._any_client import KINDS as CLIENT_KINDS
from ._demo_telemetry import missing_sdk
from ._hints import PLUGIN_COMMANDS, did_you_mean
from ._hookcalls import HookCall
from .commands import CommandError, Commands
from .config import check_file
from .demo import PROVIDERS, missing_client, missing_plugin
from .demo import run as run_demo
from .errors import AsappAuthError, ConfigurationError, PluginError
from .pipeline import AuthPipeline
from .plugins import (
    discover,
    get_plugin_manager,
    hook_problems_of,
    hooks_of,
    register_plugin,
    unavailable,
)


def _plugins(args: argparse.Namespace) -> int:
    infos = discover()
    rows = [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "entry_point": info.value,
            "hooks": hooks_of(info.plugin) if info.loaded else [],
            "error": info.error,
            "problems": hook_problems_of(info.plugin) if info.loaded else [],
        }
        for info in infos
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no asapp-auth plugins installed")
    for row in [] if args.json else rows:
        name, dist, version = row["name"], row["distribution"], row["version"]
        where = f"{dist} {version}" if dist else str(row["entry_point"])
        hooks = ", ".join(row["hooks"] or []) or "-"
        if row["error"]:
            state = f"BROKEN: {row['error']}"
        elif row["problems"]:
            state = f"BROKEN: {'; '.join(row['problems'])}"
        else:
            state = f"hooks: {hooks}"
        print(f"{name!s:<12} {where:<28} {state}")
    return 1 if any(row["error"] or row["problems"] for row in rows) else 0


def _check(args: argparse.Namespace) -> int:
    source, problems = check_file(args.config)
    if not problems:
        print(f"ok: {source}")
        return 0
    print(f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
    for problem in problems:
        print(f"  - {problem}")
    return 2


def _context(args: argparse.Namespace) -> int:
    with AuthPipeline.from_config(args.config) as pipeline:
        pipeline.load(args.customer)
        context = pipeline.get_context(needs_refresh=args.refresh)
        entry = pipeline.cached()
    assert context is not None
    assert entry is not None
    row = {
        "customer": args.customer,
        "plugin": entry.plugin,
        "expires_in": context.expires_in,
        "expires_at": None if context.expires_at is None else context.expires_at.isoformat(),
        "context": context.redacted(),
    }
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(f"customer:   {row['customer']}")
        print(f"answered by {row['plugin']}")
        print(f"expires:    {row['expires_at'] or 'unknown'}")
        print(f"context:    {json.dumps(row['context'])}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    problem = missing_plugin(args.provider) or missing_client(args.client)
    if problem is None and args.telemetry:
        problem = missing_sdk()
    if problem is not None:
        print(f"asapp-auth: {problem}", file=sys.stderr)
        return 2
    return run_demo(
        sys.stdout,
        concurrency=args.concurrency,
        provider=args.provider,
        client=args.client,
        telemetry=args.telemetry,
    )


def _keygen(args: argparse.Namespace) -> int:
    from .sealing import generate_key  # noqa: PLC0415 - needs the redis extra's cryptography

    key = generate_key()
    if args.out is None:
        print(key)  # asked for: the one command whose output is a secret
        return 0
    path = Path(args.out)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(
            f"keygen --out {path}: the file exists, and a key is never overwritten (the entries "
            "sealed with it would be lost); remove it first, or give another path"
        ) from None
    except OSError as exc:
        raise CommandError(f"keygen --out {path}: cannot create it ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    print(f"wrote a new cache key to {path} (mode 600); use it as file:{path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asapp-auth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"asapp-auth {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="walk through the authentication model on a local platform")
    demo.add_argument("--concurrency", type=int, default=50, help="requests racing an expiry")
    demo.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="app",
        help="who serves the customers' contexts: the app's own context_provider (app, the "
        "default) or the installed plugin of that name",
    )
    demo.add_argument(
        "--client",
        choices=CLIENT_KINDS,
        default="httpx",
        help="which HTTP client the app uses: httpx (the default), httpx-async, httpx2, "
        "httpx2-async, requests or aiohttp",
    )
    demo.add_argument(
        "--telemetry",
        action="store_true",
        help="print the OpenTelemetry metrics the steps recorded (needs opentelemetry-sdk)",
    )
    demo.set_defaults(run=_demo)
    check = sub.add_parser("check", help="validate a configuration file and report each problem")
    check.add_argument("--config", help="asapp-auth.toml or pyproject.toml (default: found)")
    check.set_defaults(run=_check)
    context = sub.add_parser(
        "context", help="the context a configuration attaches for a customer, redacted"
    )
    context.add_argument("--config", help="asapp-auth.toml or pyproject.toml (default: found)")
    context.add_argument("--customer", required=True, help="the customer id")
    context.add_argument("--refresh", action="store_true", help="ask with needs_refresh=True")
    context.add_argument("--json", action="store_true", help="machine-readable output")
    context.set_defaults(run=_context)
    keygen = sub.add_parser(
        "keygen", help="a new key for sealing a shared cache's entries (cache.keys)"
    )
    keygen.add_argument("--out", help="write it to this new file (mode 600) instead of stdout")
    keygen.set_defaults(run=_keygen)
    plugins = sub.add_parser("plugins", help="list installed plugins and the hooks they implement")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(run=_plugins)
    _plugin_commands(sub)
    return parser


def _plugin_commands(sub: Any) -> None:
    """The commands installed plugins add through ``register_commands``; a plugin that fails
    there loses its commands, with one line on stderr, and breaks no other."""
    manager = get_plugin_manager()
    for info in discover():
        if not info.loaded:
            continue  # asapp-auth plugins reports it
        try:
            register_plugin(manager, info.plugin, info.name)
        except AsappAuthError:
            continue  # asapp-auth plugins reports it
    commands = Commands(sub)
    call = HookCall(manager, "register_commands", {"commands": commands})
    for impl in call.impls:
        commands.plugin = impl.plugin_name
        try:
            call(impl)
        except Exception as exc:
            print(
                f"asapp-auth: plugin {impl.plugin_name!r}: its commands are left out: "
                f"register_commands raised {type(exc).__name__}: {exc}".splitlines()[0],
                file=sys.stderr,
            )


def _unknown_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """Why the command ``argv`` names does not exist, and what to do; ``None`` when it does, or
    when argparse should speak (no command, an option first)."""
    words = [word for word in argv if word != "--debug"]
    if not words or words[0].startswith("-"):
        return None
    known = next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    command = words[0]
    if command in known:
        return None
    plugin = PLUGIN_COMMANDS.get(command)
    if plugin is not None:
        installed = [info.name for info in discover()]
        return f"the {command} command comes with the {plugin} plugin: " + unavailable(
            plugin, installed
        )
    return f"unknown command {command!r}{did_you_mean(command, known)}; see asapp-auth --help"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    problem = _unknown_command(parser, argv)
    if problem is not None:
        print(f"asapp-auth: {problem}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except BrokenPipeError:  # the reader went away (asapp-auth plugins | head)
        return 0
    except CommandError as exc:
        print(f"asapp-auth: {exc}", file=sys.stderr)
        return 2
    except (AsappAuthError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"asapp-auth: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError | PluginError) else 1


if __name__ == "__main__":
    sys.exit(main())
