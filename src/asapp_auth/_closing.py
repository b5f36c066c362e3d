"""Closing a pipeline: ``close()``, ``aclose()``, ``with`` and ``async with``.

The pipeline itself holds nothing to release; its plugins may (an HTTP client, a worker thread
with queued revocations). Closing tells each of them through ``on_pipeline_closed``, with a
deadline for the work they still have to finish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from types import TracebackType
from typing import Self

from ._checks import seconds as _seconds
from ._state import PipelineState
from ._workers import off_loop
from .errors import ConfigurationError

__all__ = ["CLOSE_TIMEOUT", "MAX_CLOSE_TIMEOUT", "Closing"]

log = logging.getLogger("asapp_auth")

CLOSE_TIMEOUT = 10.0
# Longer than any plugin's pending work should take; a larger timeout is a mistake, not a wish.
MAX_CLOSE_TIMEOUT = 300.0
# How long aclose() waits past the deadline for a plugin that overruns it.
_GRACE = 1.0


class Closing(PipelineState):
    """``close``, ``aclose`` and the context-manager protocols of ``AuthPipeline``."""

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Tell every plugin to release what it holds (``on_pipeline_closed``), giving it
        ``timeout`` seconds to finish its pending work, such as revocations.

        Leaving a ``with`` block calls it. Plugins may refuse work afterwards: close a
        pipeline once you are done with it, as you would an ``httpx.Client``. A ``timeout`` that
        is not a number of seconds from 0 to 300 raises ``ConfigurationError``.
        """
        self._notify("on_pipeline_closed", pipeline=self, deadline=self._deadline(timeout))

    async def aclose(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """``close()`` for asyncio: the plugins' hooks run in a worker thread, off the event
        loop. It returns a second after the deadline at the latest; a hook that overruns it is
        logged and goes on in the background."""
        deadline = self._deadline(timeout)
        wait = deadline - time.monotonic() + _GRACE
        done = await off_loop(
            self._notify, "on_pipeline_closed", timeout=wait, pipeline=self, deadline=deadline
        )
        if not done:
            log.warning(
                "closing the pipeline: a plugin's on_pipeline_closed hook did not return by its "
                "deadline (timeout=%gs); it goes on in the background",
                timeout,
            )

    def _release(self, plugins: Collection[str]) -> None:
        """Close and unregister ``plugins`` (registered names): the ones a pipeline had
        configured when configuring the next one failed, so that no pipeline owns them."""
        deadline = self._deadline(CLOSE_TIMEOUT)
        self._notify("on_pipeline_closed", plugins, pipeline=self, deadline=deadline)
        for name in plugins:
            self._pm.unregister(name=name)

    @staticmethod
    def _deadline(timeout: float) -> float:
        seconds = _seconds("timeout", timeout)
        if seconds > MAX_CLOSE_TIMEOUT:
            raise ConfigurationError(
                f"closing the pipeline: timeout={seconds:g}s is above the "
                f"{MAX_CLOSE_TIMEOUT:g}s it may wait for its plugins' pending work: pass a "
                f"timeout of at most {MAX_CLOSE_TIMEOUT:g}s"
            )
        return time.monotonic() + seconds

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
