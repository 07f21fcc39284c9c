"""Checks of the values users pass, each raising an error that names the value and the fix.

One module, so that the same kind of value is checked the same way everywhere: a number
of seconds is finite (``inf`` is refused here, not as an ``OverflowError`` deep inside a
``QDeadlineTimer``), a pool size is a whole number, a priority is an int.
"""

from __future__ import annotations

import math

from ._errors import ConfigurationError

__all__ = ("check_priority", "check_seconds", "check_size")


def check_seconds(
    what: str, value: object, *, allow_zero: bool = False, allow_none: bool = False
) -> None:
    """Refuse anything but a finite, positive (or, with ``allow_zero``, >= 0) number.

    Raises:
        ConfigurationError: Naming ``what``, the accepted values and what was given.
    """
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        kind = "non-negative" if allow_zero else "positive"
        raise ConfigurationError(
            f"{what} must be a {kind} number of seconds{' or None' if allow_none else ''}, "
            f"got {value!r}"
        )


def check_size(what: str, value: object) -> int:
    """A number of workers: a whole number, 1 or more.

    Raises:
        ConfigurationError: Naming ``what`` and what was given.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"{what} must be a whole number of workers (1 or more), "
            f"got {value!r} ({type(value).__name__})"
        )
    if value < 1:
        raise ConfigurationError(f"{what} must be 1 or more, got {value}")
    return value


def check_priority(value: object) -> int:
    """A task priority: an int (higher runs first).

    Raises:
        ConfigurationError: What was given.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"priority must be an int (higher runs first), got {value!r}")
    return value
