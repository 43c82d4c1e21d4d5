"""The web server's worker: gunicorn's gthread worker, reading each request head before a thread takes it.

gunicorn's gthread worker hands a connection to a thread as soon as its first bytes arrive, and
the thread then blocks until the whole head is in: 8 clients that send half a request head and
stop hold all 2 x 4 threads, and /healthz goes unanswered (issue 9). Here the worker's event loop
reads the head without blocking, buffering it per connection, and only a complete head goes to a
thread (one past HEAD_LIMIT is refused with 431). A slow client costs a
buffer, never a thread, and is dropped after HEAD_TIMEOUT. Figures: bench/slow_clients.py, README.
"""

from __future__ import annotations

import os
import queue
import selectors
import signal
import socket
import time
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

# A request head must be complete this many seconds after its first byte was awaited.
HEAD_TIMEOUT = 10.0
# A head still unfinished at this size is refused with 431 (RFC 6585 section 5) and the connection
# closed; browsers and proxies send far less (nginx buffers at most 4 x 8 KiB of headers).
HEAD_LIMIT = 64 * 1024
REFUSED_LINGER = 2.0
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
READ_SIZE = 16 * 1024


def head_complete(buffer: bytearray) -> bool:
    """True once the buffer holds the blank line that ends an HTTP/1.x head (RFC 9112 section 2.1)."""
    return b"\r\n\r\n" in buffer or b"\n\n" in buffer


# What a worker stops on: the master's SIGTERM (graceful) or SIGQUIT (quick). Not SIGINT: see init_signals.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT)


def hand_over_master_signals(arbiter, worker) -> None:
    """gunicorn's post_fork hook: give the new worker the master's signal queue that its fork inherited."""
    worker.inherited_signals = arbiter.SIG_QUEUE


class HeadBufferingWorker(ThreadWorker):
    """A gthread worker whose threads only ever see complete request heads."""

    inherited_signals: queue.SimpleQueue | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading_heads: dict = {}  # connection -> (buffer, deadline)
        self.refused: set = set()  # connections answered 431, drained until the client closes

    def init_signals(self) -> None:
        """gunicorn's worker handlers, then a stop signal that came since the fork acted on."""
        super().init_signals()
        # Ctrl-C in a terminal sends SIGINT to the whole foreground group: the master, which answers
        # with one SIGQUIT per worker, and every worker too. gthread's quick exit (sys.exit from the
        # handler) run twice in a worker deadlocks in ThreadPoolExecutor.shutdown (cpython#121649),
        # and `idp serve` then took the master's graceful timeout, 30 s, to stop. The master's
        # SIGQUIT alone stops a worker in about a second.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Until now this fork ran the master's handlers, which only queue a signal for the master's
        # loop, never run here. A stop sent in that window (a SIGTERM to the process group, or the
        # master's one SIGTERM to a worker still booting) was lost, and the master waited its
        # graceful timeout (30 s) before killing this worker.
        pending = []
        while self.inherited_signals is not None:
            try:
                pending.append(self.inherited_signals.get_nowait())
            except queue.Empty:
                break
        stop = next((sig for sig in pending if sig in STOP_SIGNALS), None)
        if stop is not None:
            os.kill(os.getpid(), stop)  # to the handler just installed

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
        if conn in self.refused:
            return  # discarded until the client closes: closing on unread data would RST over the 431 (RFC 9112 9.6)
        buffer += chunk
        if len(buffer) > HEAD_LIMIT and not head_complete(buffer):
            self.refuse(conn)
        elif head_complete(buffer):
            self.poller.unregister(conn.sock)
            del self.reading_heads[conn]
            conn.init()  # the parser (no TLS here: it terminates in front)
            conn.parser.unreader.unread(bytes(buffer))
            conn.data_ready = True
            super().enqueue_req(conn)

    def refuse(self, conn) -> None:
        """Answer 431, half-close, and keep draining what the client still sends for a short while."""
        try:
            conn.sock.send(TOO_LARGE)  # tiny: it fits the empty send buffer of a non-blocking socket
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.drop(conn)
            return
        self.refused.add(conn)
        self.reading_heads[conn] = (bytearray(), time.monotonic() + REFUSED_LINGER)

    def drop(self, conn) -> None:
        """Forget and close a connection still reading its head."""
        self.refused.discard(conn)
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
