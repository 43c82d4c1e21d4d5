"""The web server's worker: gunicorn's gthread worker, reading each request head before a thread takes it.

gunicorn's gthread worker hands a connection to a thread as soon as its first bytes arrive, and
the thread then blocks until the whole head is in: 8 clients that send half a request head and
stop hold all 2 x 4 threads, and /healthz goes unanswered (issue 9). Here the worker's event loop
reads the head without blocking, buffering it per connection, and only a complete head (or one
past the size limit, which the parser then refuses) goes to a thread. A slow client costs a
buffer, never a thread, and is dropped after HEAD_TIMEOUT. Figures: bench/slow_clients.py, README.
"""

from __future__ import annotations

import selectors
import time
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

# A request head must be complete this many seconds after its first byte was awaited.
HEAD_TIMEOUT = 10.0
# A head larger than this goes to the parser as it is: gunicorn's own limits (limit_request_line,
# limit_request_fields, limit_request_field_size) refuse it with a 4xx.
HEAD_LIMIT = 64 * 1024
READ_SIZE = 16 * 1024


def head_complete(buffer: bytearray) -> bool:
    """True once the buffer holds the blank line that ends an HTTP/1.x head (RFC 9112 section 2.1)."""
    return b"\r\n\r\n" in buffer or b"\n\n" in buffer or len(buffer) > HEAD_LIMIT


class HeadBufferingWorker(ThreadWorker):
    """A gthread worker whose threads only ever see complete request heads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading_heads: dict = {}  # connection -> (buffer, deadline)

    def enqueue_req(self, conn) -> None:
        """Give the connection to a thread once its head is buffered; until then, read it here."""
        buffered = conn.parser is not None and conn.parser.unreader.buf.getvalue()
        if buffered or not self.alive:
            super().enqueue_req(conn)  # pipelined read-ahead, or stopping: gunicorn's own path
            return
        conn.sock.setblocking(False)
        self.reading_heads[conn] = (bytearray(), time.monotonic() + HEAD_TIMEOUT)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_head_readable, conn))

    def on_head_readable(self, conn, _sock) -> None:
        """Read what has arrived; hand the connection on when the head is complete, close it on EOF."""
        buffer, _ = self.reading_heads[conn]
        try:
            chunk = conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.drop(conn)
            return
        buffer += chunk
        if head_complete(buffer):
            self.poller.unregister(conn.sock)
            del self.reading_heads[conn]
            conn.init()  # the parser (no TLS here: it terminates in front)
            conn.parser.unreader.unread(bytes(buffer))
            conn.data_ready = True
            super().enqueue_req(conn)

    def drop(self, conn) -> None:
        """Forget and close a connection still reading its head."""
        self.reading_heads.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gunicorn's expiry of idle connections, plus heads not complete within HEAD_TIMEOUT."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [conn for conn, (_, deadline) in self.reading_heads.items() if deadline <= now]:
            self.drop(conn)
