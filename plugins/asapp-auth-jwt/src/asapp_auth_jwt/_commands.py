"""``asapp-auth jwks KEY...``: print the public JWKS of private keys.

Give the receiving side this JWKS so that it can verify the tokens; it holds no private member.
The command comes to ``asapp-auth`` through the ``register_commands`` hook; its errors speak of
its arguments and flags, not of the plugin's settings.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from asapp_auth import hookimpl
from asapp_auth.commands import CommandError, Commands
from asapp_auth.errors import ConfigurationError

from ._keys import PLUGIN
from ._signer import Signer, load_signers, public_jwks

__all__ = ["register_commands"]

_KEY = "a PEM file, a JWK or JWKS file, or env:NAME"


@hookimpl
def register_commands(commands: Commands) -> None:
    """Add ``asapp-auth jwks``."""
    jwks = commands.add(
        "jwks",
        help="print the public JWKS of private keys, for the side that verifies the tokens",
        description="Print the public JWKS of private keys: give it to the side that verifies "
        "the tokens. It holds no private member.",
        run=_jwks,
    )
    jwks.add_argument("keys", nargs="+", metavar="KEY", help=_KEY)
    jwks.add_argument("--algorithm", help="the algorithm of keys that do not say theirs (ES256...)")
    jwks.add_argument(
        "--passphrase-env", metavar="VAR", help="environment variable holding the PEM passphrase"
    )
    jwks.add_argument("--kid", help="the key id, when a single PEM key is given")


def _jwks(args: argparse.Namespace) -> int:
    if args.kid and len(args.keys) != 1:
        raise CommandError(f"jwks: --kid names one key, but {len(args.keys)} KEYs were given")
    passphrase = _passphrase(args.passphrase_env)
    signers: list[Signer] = []
    for key in args.keys:
        data, where = _read(key)
        # The passphrase is for the encrypted PEM keys among those given.
        own = passphrase if b"ENCRYPTED" in data else None
        try:
            signers += load_signers(
                data,
                algorithm=args.algorithm,
                kid=args.kid,
                passphrase=own,
                where=where,
                named_by="--passphrase-env",
            )
        except ConfigurationError as exc:
            raise CommandError(f"jwks: {str(exc).removeprefix(f'{PLUGIN}: ')}") from None
    try:
        document = public_jwks(signers)
    except ConfigurationError as exc:
        raise CommandError(f"jwks: {str(exc).removeprefix(f'{PLUGIN}: ')}") from None
    print(json.dumps(document, indent=2))
    return 0


def _passphrase(variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        state = "is not set" if value is None else "is empty"
        raise CommandError(
            f"jwks: --passphrase-env names environment variable {variable!r}, which {state}; "
            "set it to the PEM passphrase"
        )
    return value


def _read(key: str) -> tuple[bytes, str]:
    """The bytes of KEY and where they came from, for messages."""
    if key.startswith("env:"):
        name = key[4:]
        value = os.environ.get(name)
        if not value:
            raise CommandError(f"jwks: KEY {key!r} names an environment variable that is not set")
        return value.encode("utf-8"), f"from environment variable {name!r}"
    path = Path(key).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(
            f"jwks: KEY {key!r} cannot be read ({exc.strerror or type(exc).__name__}); give {_KEY}"
        ) from None
    if not data.strip():
        raise CommandError(f"jwks: KEY {key!r} is an empty file; give {_KEY}")
    return data, f"in file {key!r}"
