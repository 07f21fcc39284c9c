"""Stand-ins for the reader's own functions in the docs' examples, where a worker process
or a Dask worker must import them by name (``tests/test_docs.py``).

Kept apart from the test module so that a worker importing them does not import pytest.
"""

from __future__ import annotations

from casare_workers import TaskContext


def thumbnail(path: str) -> str:
    """A thumbnail of an image file (here: its name, as text)."""
    return f"thumbnail of {path}"


def make_thumbnail(path: str) -> str:
    """The same, under the name cpu-bound.md uses."""
    return thumbnail(path)


def ocr(image: object) -> str:
    """Text read from an image (here: a fixed text)."""
    return f"text of {image}"


def ocr_page(path: str, ctx: TaskContext | None = None) -> str:
    """OCR of one page on a cluster, with progress (distributed.md)."""
    if ctx is not None:
        ctx.progress(1, 1)
    return f"text of {path}"
