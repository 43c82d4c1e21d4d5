"""`python -m bench.fuzz`: hostile requests against a running `idp serve`; zero 5xx and no rows written, or exit 1.

Every route of the app's URL map, with every method (and some it does not allow), is sent
malformed parameters, bodies and headers: NUL bytes and lone surrogates, numbers beyond any
column, `next` values `urlsplit` cannot parse, tampered cursors, broken JSON, form and chunked
bodies. Requests are anonymous, as from the internet. The run is bounded in count and in time,
loopback only, and reproducible from its seed. It prints the answers by status class, every 5xx,
and the row count of every table before and after with the change.

`generate(rng, known)` is also what the generated fuzz test of the suite sends through Flask's
test client (tests/functional/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote, urlsplit

from bench.harness import BenchError, Target

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


# Text no database column can hold, numbers beyond any column, URLs urlsplit cannot parse, and the
# protocol's own words in the wrong places.
HOSTILE = [
    "", "\x00", "a\x00b", "\ud800", "x\udfff", "%00", "%", "%zz", "/%09/[x", "/\t/[x", "//evil.example", "\\\\evil.example",
    "/admin/%09/[x", "/admin/\x00", "[", "]", "{", "http://[::1", "http://evil.example/", "javascript:alert(1)",
    "<script>alert(1)</script>", "' OR 1=1 --", "9" * 30, str(2**31), str(2**63), str(2**64), "-1", "0", "1e309",
    "NaN", "ÿ", "é", "\u202e", "\ufeff", "\uffff", "\U0001f600", "A" * 5000, "a b", "../../etc/passwd", "null",
    "true", "[]", "{}", "S256", "plain", "openid", "openid profile email offline_access", "bogus_scope", "code",
    "token", "none", "login", "consent", "none login", "select_account", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
    "eyJ" + "A" * 80 + ".eyJ.x", "a.b.c", "authorization_code", "refresh_token", "client_credentials", "password",
    "9999-12-31T23:59", "0001-01-01T00:00", "2026-13-40T99:99", "10000-01-01T00:00",
    _cursor([2**70, 1]), _cursor([{"dt": "9999-12-31T23:59:59+00:00"}, 2**40]), _cursor([{"dt": "0001-01-01T00:00:00+00:00"}, -2**63]),
    _cursor(["a\x00", 1]), _cursor(["\ud800"]), _cursor([1e308, 1]), _cursor([{"dt": 5}, 1]), _cursor([None, None]),
    "AAAA", "====", "a" * 600,
]
INTEGERS = ["0", "1", "2", "3", str(2**31 - 1), str(2**31), str(2**63 - 1), str(2**63), "9" * 40, "-1", "01", "1.5"]
PARAMETERS = [
    "client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method",
    "prompt", "max_age", "id_token_hint", "login_hint", "ui_locales", "request", "request_uri", "response_mode", "rid",
    "next", "after", "before", "q", "status", "client", "kind", "user", "action", "since", "until", "target", "sid",
    "only", "confirmed", "token", "token_type_hint", "grant_type", "code", "code_verifier", "refresh_token",
    "client_secret", "post_logout_redirect_uri", "logout_hint", "access_token", "email", "name", "password",
    "username", "current_password", "new_password", "confirm", "decision", "alg", "force", "csrf_token",
    "redirect_uris", "post_logout_redirect_uris", "grant_types", "token_endpoint_auth_method", "skip_consent",
    "backchannel_logout_uri", "id_token_signed_response_alg", "is_admin", "signed_out", "resource", "audience",
]
EXTRA_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=x", "multipart/form-data",
    "text/plain", "application/x-www-form-urlencoded; charset=utf-16", "application/jwt", "*/*", "\x00", "",
]


@dataclass
class FuzzRequest:
    """One request, already in its wire form: an ASCII target, latin-1 headers, a body in bytes."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # A chunked body sent as-is, framing and all (possibly broken); only over a real socket.
    chunked: bytes | None = None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Known:
    """Real values the fuzz mixes in, so requests get past the first check: a client, its redirect URI, ids."""

    client_id: str = ""
    client_secret: str = ""
    redirect_uri: str = ""
    integers: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)


def routes(app) -> list[tuple[str, list[str]]]:
    """Every rule of the app's URL map with its methods."""
    return sorted((rule.rule, sorted(rule.methods or ())) for rule in app.url_map.iter_rules())


def _text(rng: random.Random, known: Known) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(HOSTILE)
    if roll < 0.75:
        return rng.choice([known.client_id, known.redirect_uri, *known.strings] or [""])
    if roll < 0.85:
        return rng.choice(HOSTILE) + rng.choice(HOSTILE)
    return "".join(chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0, 0x110000)])) for _ in range(rng.randrange(1, 12)))


def _wire(value: str) -> bytes:
    """What a client puts on the wire for `value`: UTF-8, lone surrogates too (as a broken client would)."""
    return value.encode("utf-8", "surrogatepass")


def _escape(value: str, rng: random.Random) -> str:
    """Percent-encoded, or (sometimes) raw ASCII with its broken escapes kept."""
    if value.isascii() and value.isprintable() and " " not in value and rng.random() < 0.2:
        return value.replace("?", "%3F").replace("#", "%23")
    return quote(_wire(value), safe="")


def _path(rule: str, rng: random.Random, known: Known) -> str:
    def fill(match: re.Match) -> str:
        if match.group(1) == "int":
            return rng.choice(INTEGERS + known.integers)
        return _escape(_text(rng, known), rng)

    return re.sub(r"<(?:(\w+):)?\w+>", fill, rule)


def _pairs(rng: random.Random, known: Known) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(rng.randrange(0, 7)):
        name = rng.choice(PARAMETERS) if rng.random() < 0.9 else _text(rng, known)
        pairs.append((name, _text(rng, known)))
    if rng.random() < 0.3 and known.client_id:
        pairs += [("client_id", known.client_id), ("redirect_uri", known.redirect_uri), ("response_type", "code")]
    return pairs


def _encode_pairs(pairs: list[tuple[str, str]], rng: random.Random) -> str:
    return "&".join(f"{_escape(name, rng)}={_escape(value, rng)}" for name, value in pairs)


def _json_value(rng: random.Random, known: Known, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        return {rng.choice(PARAMETERS + ["\x00", "\ud800"]): _json_value(rng, known, depth + 1) for _ in range(rng.randrange(0, 4))}
    if depth < 3 and roll < 0.35:
        return [_json_value(rng, known, depth + 1) for _ in range(rng.randrange(0, 4))]
    if roll < 0.45:
        return rng.choice([None, True, False, 0, -1, 2**64, 1e308, 0.5])
    return _text(rng, known)


def _body(rng: random.Random, known: Known, headers: dict[str, str]) -> tuple[bytes | None, bytes | None]:
    """(body, chunked body) of one of the shapes a hostile client sends."""
    kind = rng.choice(["none", "form", "form", "json", "broken_json", "bytes", "multipart", "chunked", "broken_chunked"])
    if kind == "none":
        return None, None
    if kind == "form":
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return _encode_pairs(_pairs(rng, known), rng).encode(), None
    if kind == "json":
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(_json_value(rng, known)).encode(), None
    if kind == "broken_json":
        headers.setdefault("Content-Type", "application/json")
        return rng.choice([b"{", b'{"a": "\\ud800"', b"\xff\xfe", b'"\\u0000"', b"[" * 2000, b'{"client_id": 1e99999}']), None
    if kind == "bytes":
        headers.setdefault("Content-Type", rng.choice(CONTENT_TYPES))
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))), None
    if kind == "multipart":
        headers["Content-Type"] = "multipart/form-data; boundary=b"
        name = _wire(rng.choice(PARAMETERS + ["\x00"]))
        return (b'--b\r\nContent-Disposition: form-data; name="' + name + b'"; filename="\x00.txt"\r\n\r\n'
                + _wire(_text(rng, known)) + rng.choice([b"\r\n--b--\r\n", b"\r\n--b", b""])), None
    headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    payload = _encode_pairs(_pairs(rng, known), rng).encode()
    if kind == "chunked":
        return None, f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n"
    # Broken but complete: a truncated body would only make the server wait for the rest, like a slow client.
    return None, rng.choice([b"zz\r\n" + payload + b"\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n", b"-1\r\nab\r\n0\r\n\r\n",
                             b"3;x\x00=\r\nabc\r\n0\r\n\r\n", b"0x3\r\nabc\r\n0\r\n\r\n", b"3\r\nabc\r\n0\r\nX-Trailer\r\n\r\n"])


def _header_text(value: str) -> str:
    """A header value as a server decodes it (bytes as latin-1), without line breaks."""
    return _wire(value).decode("latin-1").replace("\r", "").replace("\n", "")


def _basic(client_id: str, secret: str) -> str:
    """client_secret_basic (RFC 6749 2.3.1) of any text, lone surrogates included."""
    pair = quote(_wire(client_id), safe="") + ":" + quote(_wire(secret), safe="")
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _headers(rng: random.Random, known: Known) -> dict[str, str]:
    headers: dict[str, str] = {}
    choices = {
        "Authorization": lambda: rng.choice([
            "Bearer " + _text(rng, known), "Basic " + _text(rng, known), "Basic %%%",
            _basic(known.client_id, _text(rng, known)), _basic(_text(rng, known), _text(rng, known)), "DPoP x", "Bearer",
        ]),
        "Accept": lambda: rng.choice(["application/json", "text/html", "*/*", "\x00", "application/json;q=x"]),
        "Origin": lambda: rng.choice(["http://evil.example", "null", known.redirect_uri, "\x00", _text(rng, known)]),
        "If-None-Match": lambda: rng.choice(['"x"', "*", "\x00", _text(rng, known)]),
        "Cookie": lambda: "; ".join(f"{name}={_text(rng, known)}" for name in rng.sample(["idp_session", "idp_admin", "session", "x"], 2)),
        "X-Forwarded-For": lambda: rng.choice(["1.2.3.4", "\x00", "999.1.1.1", _text(rng, known)]),
        "User-Agent": lambda: _text(rng, known),
        "Referer": lambda: _text(rng, known),
        "Content-Type": lambda: rng.choice(CONTENT_TYPES),
        "Accept-Language": lambda: _text(rng, known),
        "Access-Control-Request-Method": lambda: rng.choice(["POST", "\x00", "DELETE"]),
    }
    for name in rng.sample(sorted(choices), rng.randrange(0, 5)):
        headers[name] = _header_text(choices[name]())
    return headers


def generate(rng: random.Random, table: list[tuple[str, list[str]]], known: Known, rule: str | None = None,
             method: str | None = None) -> FuzzRequest:
    """One hostile request for `rule` and `method` (both drawn from `table` when not given)."""
    if rule is None:
        rule, methods = rng.choice(table)
        method = rng.choice(methods) if rng.random() < 0.8 else rng.choice(EXTRA_METHODS)
    path = _path(rule, rng, known)
    pairs = _pairs(rng, known)
    target = path + (("?" + _encode_pairs(pairs, rng)) if pairs else "")
    headers = _headers(rng, known)
    body, chunked = (None, None) if method in ("GET", "HEAD") and rng.random() < 0.8 else _body(rng, known, headers)
    return FuzzRequest(method=method or "GET", target=target, headers=headers, body=body, chunked=chunked)


# --- the run against a server ------------------------------------------------------------------------


@dataclass
class Tally:
    """What came back: counts per status, the 5xx answers, transport failures."""

    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: Counter = field(default_factory=Counter)
    timeouts: int = 0
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: FuzzRequest, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status >= 500:
                self.server_errors.append(f"{status} {request.method} {request.target[:200]}")


def send(connection: http.client.HTTPConnection, request: FuzzRequest) -> int:
    """Send one request on a keep-alive connection; the answer's status."""
    connection.putrequest(request.method, request.target, skip_accept_encoding=True)
    for name, value in request.headers.items():
        connection.putheader(name, value.encode("latin-1"))
    if request.chunked is not None:
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        connection.send(request.chunked)
    else:
        if request.body is not None or request.method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(request.body or b"")))
        connection.endheaders(request.body)
    response = connection.getresponse()
    response.read()
    if response.will_close:
        connection.close()
    return response.status


def run(base_url: str, requests: Iterable[FuzzRequest], concurrency: int, max_seconds: float, timeout: float = 30) -> Tally:
    """Send `requests` from `concurrency` threads, each on its own connection, until done or out of time."""
    parts = urlsplit(base_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise BenchError(f"the fuzz only runs against loopback, not {parts.hostname!r}")
    tally, deadline, queue = Tally(), time.monotonic() + max_seconds, iter(requests)
    next_lock = threading.Lock()

    def take() -> FuzzRequest | None:
        with next_lock:
            return next(queue, None) if time.monotonic() < deadline else None

    def worker() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        while (request := take()) is not None:
            try:
                try:
                    tally.record(request, send(connection, request))
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    # A kept-alive connection the server had closed meanwhile: once more on a new one.
                    connection.close()
                    tally.record(request, send(connection, request))
            except socket.timeout:
                with tally.lock:
                    tally.timeouts += 1
                connection.close()
            except (OSError, http.client.HTTPException) as error:
                # Refused on a fresh connection too: the server dropped it without an answer.
                with tally.lock:
                    tally.transport_errors[type(error).__name__] += 1
                connection.close()
            with tally.lock:
                tally.sent += 1
        connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def row_counts(app) -> dict[str, int]:
    """Rows per table of the app's database."""
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import Base

    with app.app_context():
        counts = {table.name: db.session.scalar(select(func.count()).select_from(table)) for table in Base.metadata.sorted_tables}
        db.session.remove()
        db.engine.dispose()
    return counts


def seed(app) -> Known:
    """A confidential client and a user, so requests naming them reach past the first checks."""
    from idp.clients.service import create_client
    from idp.db import db
    from idp.users.service import create_user

    redirect_uri = "http://127.0.0.1:9/callback"
    with app.app_context():
        client, secret = create_client("Fuzz RP", redirect_uris=[redirect_uri])
        user = create_user(f"fuzz-{os.urandom(4).hex()}@example.com", os.urandom(16).hex())
        db.session.commit()
        known = Known(client_id=client.client_id, client_secret=secret, redirect_uri=redirect_uri,
                      integers=[str(user.id)], strings=[user.email, user.subject])
        db.session.remove()
        db.engine.dispose()
    return known


def fuzz(target: Target, count: int, seed_value: int, concurrency: int, max_seconds: float, out=sys.stdout) -> int:
    """Seed, count rows, send `count` hostile requests, count rows again, print it all; 1 if any 5xx."""
    app = target.app()
    known = seed(app)
    table = routes(app)
    rng = random.Random(seed_value)
    requests = (generate(rng, table, known) for _ in range(count))  # made as sent: 100,000 would not fit in memory twice
    before = row_counts(app)
    started = time.monotonic()
    tally = run(target.base_url, requests, concurrency, max_seconds)
    elapsed = time.monotonic() - started
    after = row_counts(app)
    report(tally, before, after, elapsed, seed_value, out)
    return 1 if tally.server_errors or tally.timeouts or tally.transport_errors else 0


def report(tally: Tally, before: dict[str, int], after: dict[str, int], elapsed: float, seed_value: int, out) -> None:
    """The figures: requests, answers by status class, 5xx, transport errors, rows per table."""
    by_class = Counter(f"{status // 100}xx" for status in tally.statuses.elements())
    print(f"sent {tally.sent} requests in {elapsed:.1f} s (seed {seed_value}); answered {sum(tally.statuses.values())}", file=out)
    print("answers: " + ", ".join(f"{name} {by_class[name]}" for name in sorted(by_class)), file=out)
    print("statuses: " + ", ".join(f"{status} {n}" for status, n in sorted(tally.statuses.items())), file=out)
    print(f"5xx: {len(tally.server_errors)}", file=out)
    for line in tally.server_errors[:50]:
        print(f"  {line}", file=out)
    transport = ", ".join(f"{name} {n}" for name, n in sorted(tally.transport_errors.items())) or "none"
    print(f"timeouts: {tally.timeouts}; dropped without an answer: {transport}", file=out)
    print(f"{'table':<28}{'before':>10}{'after':>10}{'delta':>10}", file=out)
    for name in sorted(before):
        delta = after.get(name, 0) - before[name]
        print(f"{name:<28}{before[name]:>10}{after.get(name, 0):>10}{delta:>+10}{'  <- changed' if delta else ''}", file=out)
    changed = sum(1 for name in before if after.get(name, 0) != before[name])
    print(f"tables changed: {changed}", file=out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=100_000, help="requests to send (default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop sending after this long (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=9, help="random seed; the same seed sends the same requests (default: %(default)s)")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="client threads (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes of a started server (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn process (default: %(default)s)")
    parser.add_argument("--database-url", default=os.environ.get("IDP_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
                        help="PostgreSQL URL of a scratch database for a started server; its public schema is recreated "
                             "(default: $IDP_BENCH_DATABASE_URL or %(default)s)")
    parser.add_argument("--base-url", help="fuzz an already running loopback server (its IDP_* environment must be this process's)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.max_seconds <= 0 or args.concurrency < 1:
        parser.error("requests, max-seconds and concurrency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.base_url:
            return fuzz(Target(args.base_url), args.requests, args.seed, args.concurrency, args.max_seconds)
        from bench.server import running_server

        with running_server(args.database_url, args.workers, args.threads) as target:
            return fuzz(target, args.requests, args.seed, args.concurrency, args.max_seconds)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
