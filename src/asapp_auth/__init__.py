"""asapp-auth: customer authentication for clients of a chat platform's API."""

from importlib import metadata as _metadata

from . import errors
from .context import AuthContext
from .customer import ContextProvider, Customer
from .hookspecs import hookimpl

try:
    __version__ = _metadata.version("asapp-auth")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AuthContext",
    "ContextProvider",
    "Customer",
    "__version__",
    "errors",
    "hookimpl",
]
