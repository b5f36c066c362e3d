"""Subcommands that plugins add to ``asapp-auth``, through the ``register_commands`` hook.

The core never imports a plugin module by name: ``asapp-auth`` asks every installed plugin that
``ASAPP_AUTH_PLUGINS`` allows for its commands while it builds its parser, so each one gets
``-h``/``--help``, a usage line that says ``asapp-auth NAME`` and the same error handling as the
built-in commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .errors import PluginError

__all__ = ["CommandError", "Commands"]


class CommandError(Exception):
    """What a command says when its input is wrong: ``asapp-auth`` prints ``asapp-auth:`` and
    the message, one line on stderr, and exits 2. Say it in the command line's terms (its
    arguments and flags), never a value that is secret."""


class Commands:
    """What ``register_commands`` gets: ``add`` makes one subcommand of ``asapp-auth``."""

    def __init__(self, subparsers: Any, plugin: str | None = None) -> None:
        self._subparsers = subparsers
        self._owners: dict[str, str | None] = {}  # the plugin of each command added here
        self.plugin = plugin
        """The plugin being asked for its commands (set by ``asapp-auth`` for each one)."""

    def add(
        self,
        name: str,
        *,
        help: str,
        run: Callable[[argparse.Namespace], int],
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        """A new subcommand ``asapp-auth NAME``: its parser, for the plugin to add arguments to.

        ``help`` is its line in ``asapp-auth --help``; ``description`` heads its own ``--help``.
        ``run(args)`` is called with the parsed arguments and returns the exit status. What it
        raises is handled as for the built-in commands: ``CommandError`` and the errors of
        ``asapp_auth.errors`` for configuration exit 2, other ``asapp_auth`` errors exit 1, each
        in one line. A name that is already taken is refused with ``PluginError``.
        """
        taken = self._subparsers.choices
        if name in taken:
            owner = self._owners.get(name)
            by = f"plugin {owner!r}" if owner else "asapp-auth itself"
            raise PluginError(
                f"plugin {self.plugin!r}: command {name!r} is taken by {by}; choose another name",
                plugin=self.plugin or "?",
            )
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help, description=description or help
        )
        self._owners[name] = self.plugin
        parser.set_defaults(run=run)
        return parser
