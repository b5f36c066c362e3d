"""asapp-auth-example: an example provider plugin, complete as a distribution.

The entry point ``example`` of the ``asapp_auth`` group is this module: a pipeline configured
with ``plugins={"example": {...}}`` calls ``from_settings`` with those settings and registers the
``SessionServiceProvider`` it returns.
"""

from .plugin import SETTINGS, SessionServiceProvider, from_settings

__all__ = ["SETTINGS", "SessionServiceProvider", "from_settings"]
