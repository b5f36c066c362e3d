"""Every exception asapp-auth raises, under one base class, the one warning it issues, and the
helper that names a value's type in their messages.

Messages name the plugin, customer or origin involved and say what to do next. They never hold a
token, secret, key or assertion: values are described by type (``type_with_article``), never
quoted.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AsappAuthError",
    "ConfigurationError",
    "InvalidContextError",
    "LoginRequiredError",
    "NoProviderError",
    "PluginError",
    "PluginWarning",
    "ProviderError",
    "ProviderTimeoutError",
    "RedirectBlockedError",
    "RequestNotReplayableError",
    "TokenRejectedError",
    "type_with_article",
]


class AsappAuthError(Exception):
    """Base class of every asapp-auth error."""


class ConfigurationError(AsappAuthError, ValueError):
    """A setting given to asapp-auth is missing, of the wrong type or unsafe.

    ``problems`` holds each problem, one line each, when the error reports several at once (all
    the problems of a plugin's settings); otherwise the message alone.
    """

    def __init__(self, message: str, *, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


class PluginError(AsappAuthError):
    """A plugin could not be loaded, validated or configured.

    ``plugin`` names it (the entry-point name, or the name it was registered under);
    ``problems`` holds each problem when the error reports several, as for
    ``ConfigurationError``.
    """

    def __init__(self, message: str, *, plugin: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


class PluginWarning(UserWarning):
    """A plugin was registered, but part of it looks like a mistake that will never work (a
    function named like a hook but not marked ``@hookimpl``)."""


class ProviderError(AsappAuthError):
    """A context provider failed: it raised, answered with a bad value, or took too long.

    ``plugin`` names the provider that failed (``None`` when none answered) and ``customer_id``
    the customer it was asked for. A failed refresh caches nothing; the next request asks again.
    """

    def __init__(
        self, message: str, *, plugin: str | None = None, customer_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.customer_id = customer_id


class InvalidContextError(ProviderError, ValueError):
    """A context dictionary does not follow the platform's schema (wrong type, bad expiry...)."""


class NoProviderError(ProviderError):
    """An identified customer is set but no provider answered ``provide_context`` for it."""


class ProviderTimeoutError(ProviderError, TimeoutError):
    """A provider did not answer within the pipeline's ``provider_timeout``."""


class LoginRequiredError(AsappAuthError):
    """The request needs a logged-in customer and none was set in time.

    Providers raise it too, to say that the customer's own session is gone (for instance an
    OAuth2 ``invalid_grant``): the pipeline then runs the ``on_login_required`` hook.
    """

    def __init__(self, message: str, *, customer_id: str | None = None) -> None:
        super().__init__(message)
        self.customer_id = customer_id


class TokenRejectedError(AsappAuthError):
    """The server rejected a context that had just been refreshed: asapp-auth does not loop.

    ``status_code`` is the server's answer, ``origin`` where it came from.
    """

    def __init__(
        self, message: str, *, origin: str, status_code: int, customer_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.origin = origin
        self.status_code = status_code
        self.customer_id = customer_id


class RequestNotReplayableError(AsappAuthError):
    """A request had to be sent again (refreshed context, login) but its body was a stream
    that has already been consumed. The context was refreshed: send the request again."""


class RedirectBlockedError(AsappAuthError):
    """A redirect would have carried part of a context (its JSON body) to another origin."""


def type_with_article(value: object) -> str:
    """``value``'s type with its article, for messages that must not quote the value: ``an
    int``, ``a str``, ``an RSAPrivateKey``, ``a UUID``, ``bytes``, ``None``.

    Plugins use it too, so that every refusal names a type the same way.
    """
    if value is None:
        return "None"
    if isinstance(value, bytes):
        return "bytes"
    name = type(value).__name__
    # By sound: a leading vowel ("an int", but "a UUID"), or an initialism whose first letter is
    # said with one ("an RSAPrivateKey", "an X448PublicKey").
    vowel = name[0] in "aeiouAEIOU" and not name.startswith(("U", "u"))
    initialism = name[:2].isupper() and name[0] in "AEFHILMNORSX"
    return f"{'an' if vowel or initialism else 'a'} {name}"
