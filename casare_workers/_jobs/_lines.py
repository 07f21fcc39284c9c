"""Output lines: from a child's pipes to an ``on_line`` callback.

:class:`ProcessProtocol` receives the child's output and its exit straight from the
asyncio transport; each stream is decoded incrementally and cut into lines by a
:class:`LineSplitter`; :func:`line_callback` calls the user's ``on_line`` the way it is
declared (``(text, stream)`` or ``(text)``)::

    child's stdout/stderr ─► pipe_data_received ─► decoder ─► LineSplitter ─► emit(text, stream)
    child's exit ──────────► process_exited      (exited)
    pipes closed ──────────► pipe_connection_lost (pipes_closed, partial lines flushed)
"""

from __future__ import annotations

import asyncio
import codecs
import inspect
import re
from collections.abc import Callable

__all__ = (
    "MAX_LINE",
    "LineCallback",
    "LineSplitter",
    "OnLine",
    "ProcessProtocol",
    "line_callback",
)

#: A "line" longer than this (no newline in sight) is cut and delivered in pieces.
MAX_LINE = 65_536

_NEWLINE = re.compile(r"\r\n|\r|\n")

LineCallback = Callable[[str, str], object]
#: What ``on_line`` may be: ``(text, stream)`` or ``(text)``.
OnLine = Callable[[str, str], object] | Callable[[str], object]


class LineSplitter:
    r"""Splits decoded text into lines on ``\n``, ``\r\n`` and a lone ``\r``.

    A lone ``\r`` is a line end because progress bars (pip, playwright) redraw with it;
    a ``\r\n`` split across two reads is still one line end.
    """

    __slots__ = ("_buf", "_skip_lf")

    def __init__(self) -> None:
        self._buf = ""
        self._skip_lf = False

    def feed(self, text: str) -> list[str]:
        if not text:
            return []
        if self._skip_lf and text[0] == "\n":
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        parts = _NEWLINE.split(self._buf + text)
        self._buf = parts.pop()
        while len(self._buf) > MAX_LINE:
            parts.append(self._buf[:MAX_LINE])
            self._buf = self._buf[MAX_LINE:]
        return parts

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, ""
        return [rest] if rest else []


class ProcessProtocol(asyncio.SubprocessProtocol):
    """Receives the child's output and exit straight from the transport.

    The documented low-level protocol rather than ``create_subprocess_exec``'s stream
    readers: there, ``Process.wait()`` returns only once every pipe is closed, so a
    grandchild that inherited stdout holds the caller until it exits.  Here the exit
    (``process_exited``) and the pipes' end are separate events.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        emit: Callable[[str, str], None],
        encoding: str,
        errors: str,
        merged: bool,
    ) -> None:
        self._emit = emit
        fds = (1,) if merged else (1, 2)
        self._streams = {
            fd: (
                "stdout" if fd == 1 else "stderr",
                codecs.getincrementaldecoder(encoding)(errors),
                LineSplitter(),
            )
            for fd in fds
        }
        self._open = set(fds)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        name, decoder, splitter = self._streams[fd]
        text = decoder.decode(data) if isinstance(data, bytes) else data
        for line in splitter.feed(text):
            self._emit(line, name)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in self._open:
            self._open.discard(fd)
            self._flush(fd)
            if not self._open and not self.pipes_closed.done():
                self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def flush_all(self) -> None:
        """Deliver partial lines still buffered (the pipes were abandoned)."""
        for fd in list(self._open):
            self._flush(fd)

    def _flush(self, fd: int) -> None:
        name, decoder, splitter = self._streams[fd]
        for line in splitter.feed(decoder.decode(b"", final=True)) + splitter.flush():
            self._emit(line, name)


def line_callback(on_line: Callable[..., object] | None) -> LineCallback | None:
    """Call ``on_line`` the way it is declared: ``(text, stream)`` or ``(text)``.

    A widget's slot (``log.appendPlainText``) takes the text alone; checked now for
    Python callables, and at the first line for builtins (Qt methods have no signature
    to read), so that a one-argument callback never silently drops every line.
    """
    if on_line is None:
        return None
    if not callable(on_line):
        raise TypeError(
            f"on_line must be a callable taking (text, stream) or (text), got "
            f"{type(on_line).__name__}"
        )
    try:
        signature = inspect.signature(on_line)
    except (TypeError, ValueError):  # a builtin, e.g. a Qt method
        return _DecideAtFirstLine(on_line)
    for count in (2, 1):
        try:
            signature.bind(*("", "")[:count])
        except TypeError:
            continue
        if count == 2:
            return on_line
        return lambda text, _stream: on_line(text)
    raise TypeError(f"on_line must take (text, stream) or (text), got {_name(on_line)}{signature}")


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class _DecideAtFirstLine:
    """An ``on_line`` without a readable signature: try ``(text, stream)``, else ``(text)``."""

    __slots__ = ("_fn", "_text_only")

    def __init__(self, fn: Callable[..., object]) -> None:
        self._fn = fn
        self._text_only: bool | None = None

    def __call__(self, text: str, stream: str) -> None:
        text_only = self._text_only
        if text_only is None:
            try:
                self._fn(text, stream)
            except TypeError as exc:
                tb = exc.__traceback__
                if tb is not None and tb.tb_next is not None:
                    raise  # raised inside the callback, not by the call itself
                try:
                    self._fn(text)
                except TypeError:
                    raise exc from None  # neither form: report the first mistake
                self._text_only = True
            else:
                self._text_only = False
        elif text_only:
            self._fn(text)
        else:
            self._fn(text, stream)
