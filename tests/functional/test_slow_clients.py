"""Slow clients cannot starve `idp serve`: request heads are buffered before a thread takes them (idp/serving.py)."""

import http.client
import socket
import time

import pytest

from bench.slow_clients import HALF_HEAD


def timed_healthz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status, time.monotonic() - started
    finally:
        connection.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # about the web server, not the database
def test_twenty_connections_holding_half_a_request_head_leave_healthz_answering(start_server):
    port = int(start_server().rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        for sock in held:
            sock.sendall(HALF_HEAD)
        time.sleep(0.5)  # under gunicorn's stock gthread worker these now hold all 2 x 4 threads
        # Several probes, so both worker processes are asked (the kernel spreads connections).
        for _ in range(6):
            status, seconds = timed_healthz(port)
            assert status == 200 and seconds < 1.0, seconds
        # A head that arrives in pieces is still served, with keep-alive and a request body.
        sock = held[0]
        sock.sendall(b"1\r\n")
        time.sleep(0.2)
        sock.sendall(b"\r\n")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        # A head that never ends is refused once it is too large to be one.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as endless:
            endless.sendall(HALF_HEAD + b"x" * 70_000)
            assert endless.recv(4096).startswith(b"HTTP/1.1 431")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(2):
            connection.request("POST", "/token", body="grant_type=password", headers={"Content-Type": "application/x-www-form-urlencoded"})
            answer = connection.getresponse()
            assert answer.status in (400, 401) and b"error" in answer.read()
        connection.close()
    finally:
        for sock in held:
            sock.close()
