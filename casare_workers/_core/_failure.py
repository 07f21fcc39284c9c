"""``TaskFailure``: what a failed task hands its ``error`` slots and ``on_error`` callbacks."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

__all__ = ("TaskFailure",)


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """A failure record: the exception a task raised, and its formatted traceback.

    What the ``error`` signal carries and ``then(on_error=...)`` receives.  Not an
    exception itself (the exception is :attr:`exception`, unchanged); the old name
    ``TaskError`` is kept as an alias.

    Attributes:
        exception: The exception object the function raised, unchanged.
        traceback: The traceback formatted as text (``traceback.format_exception``).
        task_id: The failed task's id.
        task_name: The failed task's name.
    """

    exception: BaseException
    traceback: str
    task_id: int = 0
    task_name: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, task_id: int = 0, name: str = "") -> TaskFailure:
        """Build a record for ``exc``, formatting its traceback now."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(exc, text, task_id, name)

    def __str__(self) -> str:
        return f"{type(self.exception).__name__}: {self.exception}"
