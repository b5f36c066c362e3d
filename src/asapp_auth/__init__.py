"""asapp-auth: customer authentication for clients of a chat platform's API."""

from importlib import metadata as _metadata

from . import errors
from .attach import Attacher, CallableAttacher, ContextHeader, MapContext
from .cache import CachedContext, ContextCache, MemoryContextCache, SharedContextCache
from .classify import Verdict, default_classifier
from .context import AuthContext
from .customer import ContextProvider, Customer
from .hookspecs import hookimpl, hookspec
from .pipeline import AuthPipeline, CustomerAuth
from .plugins import PluginInfo, discover, get_plugin_manager

try:
    __version__ = _metadata.version("asapp-auth")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Attacher",
    "AuthContext",
    "AuthPipeline",
    "CachedContext",
    "CallableAttacher",
    "ContextCache",
    "ContextHeader",
    "ContextProvider",
    "Customer",
    "CustomerAuth",
    "MapContext",
    "MemoryContextCache",
    "PluginInfo",
    "SharedContextCache",
    "Verdict",
    "__version__",
    "default_classifier",
    "discover",
    "errors",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
]
