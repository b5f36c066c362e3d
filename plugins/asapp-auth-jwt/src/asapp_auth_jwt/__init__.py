"""asapp-auth-jwt: signs the customer's identity as a JWT, for identity verification.

The entry point ``jwt`` of the ``asapp_auth`` group is this module: ``from_settings`` makes the
plugin object from a pipeline's settings, ``register_commands`` adds ``asapp-auth jwks``.
``Signer`` is the reusable JWS signer.
"""

from ._commands import register_commands
from ._keys import load_key
from ._provider import RESERVED_CLAIMS, SETTINGS, JWTProvider, from_settings
from ._signer import ALGORITHMS, Signer, load_signers, public_jwks

__all__ = [
    "ALGORITHMS",
    "RESERVED_CLAIMS",
    "SETTINGS",
    "JWTProvider",
    "Signer",
    "from_settings",
    "load_key",
    "load_signers",
    "public_jwks",
    "register_commands",
]
