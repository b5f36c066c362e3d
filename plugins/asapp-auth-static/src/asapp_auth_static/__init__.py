"""asapp-auth-static: fills the agreed context from a token that already exists.

The entry point ``static`` of the ``asapp_auth`` group is this module: ``from_settings`` makes
the plugin object from a pipeline's settings.
"""

from ._provider import (
    DEFAULT_TEMPLATE,
    PLACEHOLDER,
    SETTINGS,
    StaticTokenProvider,
    from_settings,
    jwt_expiry,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "PLACEHOLDER",
    "SETTINGS",
    "StaticTokenProvider",
    "from_settings",
    "jwt_expiry",
]
