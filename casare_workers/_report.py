"""How the library reports an exception raised by user code it called (any thread)."""

from __future__ import annotations

import logging

__all__ = ("logger", "report_callback_exception")

#: The library's logger.
logger = logging.getLogger("casare_workers")


def report_callback_exception(where: str, exc: BaseException) -> None:
    """Log an exception raised by user code the library called (any thread).

    The caller goes on with the next item: one faulty callback never stops the others.
    """
    logger.error("exception in %s", where, exc_info=(type(exc), exc, exc.__traceback__))
