"""``python -m asapp_auth_jwt jwks KEY...``: the same as ``asapp-auth jwks KEY...``."""

from __future__ import annotations

import sys

from asapp_auth.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
