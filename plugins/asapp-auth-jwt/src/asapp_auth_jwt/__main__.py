"""``python -m asapp_auth_jwt jwks KEY...``: print the public JWKS of private keys.

Give the receiving side this JWKS so that it can verify the tokens; it holds no private member.
Each KEY is a PEM file, a JWK or JWKS file, or ``env:NAME``, as in the plugin's ``keys`` setting.
"""

from __future__ import annotations

import argparse
import json
import sys

from asapp_auth.errors import AsappAuthError

from ._provider import signers_from_settings
from ._signer import public_jwks


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m asapp_auth_jwt", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    jwks = commands.add_parser("jwks", help="print the public JWKS of the given private keys")
    jwks.add_argument("keys", nargs="+", help="PEM file, JWK or JWKS file, or env:NAME")
    jwks.add_argument("--algorithm", help="the algorithm of keys that do not say theirs")
    jwks.add_argument("--passphrase-env", help="environment variable holding the PEM passphrase")
    jwks.add_argument("--kid", help="the key id, when a single PEM key is given")
    args = parser.parse_args(argv)
    keys: list[object] = list(args.keys)
    if args.kid:
        if len(keys) != 1:
            parser.error("--kid needs exactly one key")
        keys = [{"pem": args.keys[0], "kid": args.kid}]
    try:
        document = public_jwks(signers_from_settings(keys, args.algorithm, args.passphrase_env))
    except AsappAuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
