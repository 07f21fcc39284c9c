"""Realistic, local and bounded workloads for the demo (no internet access needed).

* I/O: HTTP requests to a small server (a child process on 127.0.0.1) that answers after
  10-60 ms, like a slow API; the worker threads spend their time waiting on sockets.
* CPU: a pure-Python computation (it holds the GIL, so threads cannot run it in parallel;
  processes can).
* map: a light transformation over 20 000 items.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import random
import socketserver
import subprocess
import sys
import threading
import urllib.request
from typing import Any

from casare_workers import JobContext, LongJob, TaskContext

__all__ = (
    "IndexJob",
    "LocalServer",
    "count_primes",
    "crash_the_process",
    "fetch",
    "normalise",
    "serve",
)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        delay = random.uniform(0.010, 0.060)
        threading.Event().wait(delay)  # the "remote" service thinking
        body = hashlib.sha256(self.path.encode()).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep the console quiet


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve() -> None:
    """Run the server in this process (the child); print the port, serve until killed."""
    server = _Server(("127.0.0.1", 0), _Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class LocalServer:
    """The slow "remote API", in a child process on a free loopback port.

    In a child process so that its Python code does not compete for the demo's GIL: the
    demo's I/O workers should spend their time waiting on sockets, as with a real server.
    """

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from demo_app.workloads import serve; serve()"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        port = self._process.stdout.readline().strip()
        if not port.isdigit():
            self._process.kill()
            raise RuntimeError("the demo's local HTTP server did not start")
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        """Stop the server process and reap it."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        if self._process.stdout is not None:
            self._process.stdout.close()


def fetch(url: str, ctx: TaskContext) -> int:
    """GET ``url`` (runs on an I/O worker thread); return the body length."""
    ctx.status(f"GET {url.rsplit('/', 1)[-1]}")
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


def count_primes(limit: int) -> int:
    """Count primes below ``limit`` by trial division: pure Python, holds the GIL."""
    count = 0
    for n in range(2, limit):
        root = int(n**0.5)
        for d in range(2, root + 1):
            if n % d == 0:
                break
        else:
            count += 1
    return count


def crash_the_process(how: str) -> None:
    """Kill the worker process running this (native code gone wrong, or the OOM killer)."""
    if how == "segfault":
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    os._exit(3)


def normalise(value: int) -> float:
    """A light per-item transformation for the 20 000-item map."""
    return (value * 2654435761 % 2**32) / 2**32


class IndexJob(LongJob[str]):
    """A long job: digest 1000 blocks of 2 MB (hashlib releases the GIL), pausable."""

    BLOCKS = 1000

    def work(self, ctx: JobContext) -> str:
        """Runs on the job's own thread; pauses and cancels at each block."""
        digest = hashlib.sha256()
        block = bytes(2 * 1024 * 1024)
        for i in range(self.BLOCKS):
            ctx.checkpoint()  # waits here while paused; raises when cancelled
            ctx.status(f"block {i + 1} of {self.BLOCKS}")
            digest.update(block)
            digest.update(i.to_bytes(4, "little"))
            ctx.progress(i + 1, self.BLOCKS)
        return digest.hexdigest()[:16]
