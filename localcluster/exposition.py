"""A tiny HTTP server that serves a Prometheus text exposition: a stand-in scrape target.

:class:`ExpositionServer` answers ``GET /metrics`` with whatever its ``render`` callable returns at that
moment (a recorded vLLM ``/metrics`` file, a synthetic gateway whose counters grow with time...), on a free
loopback port, from a daemon thread. It is what the tests and the local rig point a real Prometheus at when
no real vLLM replica runs. ``available = False`` makes it answer 503, as a replica that is still loading.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text exposition format, version 0.0.4."""
REQUEST_TIMEOUT_S = 10.0
"""Socket timeout of each connection (seconds); a scrape sends its request at once."""


class ExpositionServer:
    """Serve ``render()`` at ``http://host:port/metrics``.

    Args:
        render: returns the exposition text for each scrape (or a fixed text).
        host: address to bind (loopback by default).
        port: port to bind; 0 picks a free one.
        path: the HTTP path served.
    """

    def __init__(self, render: Callable[[], str] | str, host: str = "127.0.0.1", port: int = 0,
                 path: str = "/metrics") -> None:
        self.render: Callable[[], str] = render if callable(render) else (lambda: render)
        self.path, self.available, self.scrapes = path, True, 0
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port``, as a Prometheus target."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        """Full URL of the metrics path."""
        return f"http://{self.address}{self.path}"

    def start(self) -> ExpositionServer:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"exposition-{self.address}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ExpositionServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S  # a silent connection is closed after it instead of holding a thread

            def do_GET(self) -> None:
                if self.path.split("?")[0] != owner.path:
                    self._answer(404, b"not found\n")
                elif not owner.available:
                    self._answer(503, b"unavailable\n")
                else:
                    owner.scrapes += 1
                    self._answer(200, owner.render().encode())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: one line per scrape would flood test output."""

        return Handler
