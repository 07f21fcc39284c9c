"""Sphinx configuration: Markdown pages (MyST) plus an API reference from the docstrings.

Built by ``./dev docs`` and, in ``./dev test``, with ``-W -n`` (warnings and unresolved
references fail the build).
"""

from __future__ import annotations

import os
import typing
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

project = "casare_workers"
author = "casare_workers developers"
copyright = "2026, casare_workers developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "casare_workers"

myst_heading_anchors = 3
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Signals", "params_style")]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Types from outside the project are not cross-linked (no network at build time);
# every reference to the project's own objects must resolve.
nitpick_ignore_regex = [
    (
        "py:.*",
        r"(PySide6|shiboken6|concurrent|collections|typing|asyncio|threading|enum|types|os"
        r"|_?pickle|distributed)"
        r"(\..*)?",
    ),
    ("py:.*", r"(T|R|P|_Continuation|_Index|Any|Callable|Hashable|Iterable|Awaitable|Coroutine)"),
    (
        "py:.*",
        r"(int|str|float|bool|object|tuple|list|dict|set|type|None|BaseException|Exception)",
    ),
    ("py:.*", r"(ImportError|ValueError|LookupError|RuntimeError|TimeoutError|TypeError)"),
    ("py:.*", r"(ConnectionError|OSError)"),
    ("py:.*", r"(Q[A-Za-z]+|Signal|SignalInstance|Slot)(\..*)?"),
    # Type variables, generic bases and annotations appear under their private module
    # paths (``casare_workers._core._handle.T``): private modules have no pages, the
    # public names they stand for are documented under ``casare_workers``.
    ("py:.*", r"casare_workers\._[\w.]+"),
    ("py:.*", r"(PoolKind|TaskLike|KeyPolicy|OwnerRecord)"),
]


def _public_bases(app: Any, name: str, obj: object, options: object, bases: list[Any]) -> None:
    """Show a private base class as the classes it builds on (``Bases:`` of the API pages).

    ``LongJob`` builds on ``_jobs._jobthread.JobThread`` and ``LoopThread`` on
    ``_jobs._loopserver.LoopServer``: the reader is told ``QThread``, not a private name.
    """
    i = 0
    while i < len(bases):
        base = typing.get_origin(bases[i]) or bases[i]  # Delivery[T] -> Delivery
        if getattr(base, "__module__", "").startswith("casare_workers._"):
            bases[i : i + 1] = [b for b in base.__bases__ if b not in bases]
        else:
            i += 1


def setup(app: Any) -> None:
    """Sphinx's hook for a project's conf.py: connect the handlers above."""
    app.connect("autodoc-process-bases", _public_bases)
