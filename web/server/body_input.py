"""The request body as the gevent worker of web/server/gunicorn_conf.py hands it to the app.

gevent's own input, changed for clients that stall or send too much:

- Each wait for body bytes is registered with the worker's sweeper, which cuts
  the body off when it makes no progress for BODY_TIMEOUT_S: the read then
  raises werkzeug's 408, answered as JSON like any other error. No timer is
  armed per read (web/server/gunicorn_conf.py says why).
- A chunked body is read no further than one byte past MAX_BODY_BYTES, and
  then raises werkzeug's 413 (a body of known length over the limit is refused
  by Flask before it is read).
- A body the app left unread is not drained after the response: the
  connection is closed instead, so a client that announces a body and stalls,
  or one refused before its body was read, holds nothing.

Imported by the worker after it has monkey-patched, never by the gunicorn master.
"""

from __future__ import annotations

import time
from typing import Any

from gevent.pywsgi import Input
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

BODY = "body"  # the sweeper's name for this phase of a request


class ProgressReader:
    """The connection's buffered reader, with every wait for the client registered
    in `waiting` (handler: (deadline, phase)) for the sweeper to enforce."""

    __slots__ = ("rfile", "handler", "waiting", "timeout_s")

    def __init__(self, rfile: Any, handler: Any, waiting: dict, timeout_s: float) -> None:
        self.rfile = rfile
        self.handler = handler
        self.waiting = waiting
        self.timeout_s = timeout_s

    def read(self, size: int) -> bytes:
        """Up to `size` bytes, fewer only at end of input; the deadline moves with each piece."""
        parts = []
        handler, waiting, read1 = self.handler, self.waiting, self.rfile.read1
        try:
            while size > 0:
                waiting[handler] = (time.monotonic() + self.timeout_s, BODY)
                try:
                    data = read1(size)
                except OSError:  # gevent cancels the wait of a socket shut down for reading
                    self._check_cut_off()
                    raise
                if not data:  # end of input: the client's, or the sweeper's
                    self._check_cut_off()
                    break
                parts.append(data)
                size -= len(data)
        finally:
            waiting.pop(handler, None)
        return b"".join(parts)

    def readline(self, size: int = -1) -> bytes:
        self.waiting[self.handler] = (time.monotonic() + self.timeout_s, BODY)
        try:
            line = self.rfile.readline(size)
        except OSError:
            self._check_cut_off()
            raise
        finally:
            self.waiting.pop(self.handler, None)
        if not line:
            self._check_cut_off()
        return line

    def _check_cut_off(self) -> None:
        if self.handler.timed_out == BODY:
            raise RequestTimeout(f"The request body made no progress for {self.timeout_s:g} s.")


class BodyInput(Input):
    """gevent's wsgi.input with the changes in the module docstring."""

    __slots__ = ("handler", "limit", "received")

    def __init__(self, handler: Any, original: Input, waiting: dict, timeout_s: float,
                 limit: int) -> None:
        super().__init__(ProgressReader(original.rfile, handler, waiting, timeout_s),
                         original.content_length, original.socket, original.chunked_input)
        self.handler = handler
        self.limit = limit
        self.received = 0

    @property
    def finished(self) -> bool:
        """Whether the app has read the whole body (true when there is none)."""
        if self.chunked_input:
            return self.chunk_length == 0
        return self.position >= (self.content_length or 0)

    def read(self, length: int | None = None) -> bytes:
        if not self.chunked_input:
            return super().read(length)
        return self._counted(super().read, length)

    def readline(self, size: int | None = None) -> bytes:
        if not self.chunked_input:
            return super().readline(size)
        return self._counted(super().readline, size)

    def _counted(self, read: Any, length: int | None) -> bytes:
        room = self.limit + 1 - self.received
        if length is None or length < 0 or length > room:
            length = room
        data = read(length)
        self.received += len(data)
        if self.received == self.limit and not self.finished:
            # A reader that stops at the limit (werkzeug's, at Flask's
            # MAX_CONTENT_LENGTH) would take the body as complete.
            self.received += len(read(1))  # the end of the body, or a byte too many
        if self.received > self.limit:
            raise RequestEntityTooLarge(f"The body is larger than {self.limit} bytes.")
        return data

    def _discard(self) -> None:
        # gevent reads the rest of the body here, for the next request on the
        # connection: as long as the client cares to send it.
        if not self.finished:
            self.handler.close_connection = True
