"""The benchmark's parts: the scenario registry, a per-thread HTTP client, the load loop, statistics."""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlencode, urlsplit


class BenchError(RuntimeError):
    """A request answered something unexpected, or the set-up failed."""


# --- registry -------------------------------------------------------------------------------------

RequestFn = Callable[["Http"], None]


@dataclass(frozen=True)
class Scenario:
    """A named workload: `setup(target)` runs once and returns the function each request calls."""

    name: str
    description: str
    setup: Callable[["Target"], RequestFn]


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, description: str = ""):
    """Register `setup(target) -> request(http)` under `name` (decorator)."""

    def register(setup: Callable[[Target], RequestFn]) -> Callable[[Target], RequestFn]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} is registered twice")
        SCENARIOS[name] = Scenario(name, description or (setup.__doc__ or "").strip(), setup)
        return setup

    return register


# --- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """One keep-alive connection to the server, used by one thread (http.client: little overhead)."""

    def __init__(self, base_url: str, timeout: float = 30):
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise BenchError(f"the benchmark speaks plain http to loopback, not {base_url!r}")
        self.host, self.port, self.timeout = parts.hostname, parts.port or 80, timeout
        self.state: dict[str, Any] = {}
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                expect: int | None = 200) -> Response:
        """Send one request; raise BenchError unless the status is `expect` (None accepts any)."""
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._connection.request(method, path, body=body, headers=headers or {})
            answer = self._connection.getresponse()
            response = Response(answer.status, answer.headers, answer.read())
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if answer.will_close:
            self.close()
        if expect is not None and response.status != expect:
            raise BenchError(f"{method} {path}: expected {expect}, got {response.status}: {response.body[:200]!r}")
        return response

    def get(self, path: str, headers: dict[str, str] | None = None, expect: int | None = 200) -> Response:
        return self.request("GET", path, headers=headers, expect=expect)

    def post_form(self, path: str, data: dict[str, str], auth: tuple[str, str] | None = None,
                  headers: dict[str, str] | None = None, expect: int | None = 200) -> Response:
        """POST application/x-www-form-urlencoded, with HTTP Basic client authentication if `auth`."""
        all_headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        if auth:
            all_headers["Authorization"] = basic_authorization(*auth)
        return self.request("POST", path, body=urlencode(data).encode(), headers=all_headers, expect=expect)

    def __enter__(self) -> "Http":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def get(path: str, headers: dict[str, str] | None = None, expect: int = 200) -> RequestFn:
    """The request function of a scenario that only GETs `path`."""

    def request(http: Http) -> None:
        http.get(path, headers=headers, expect=expect)

    return request


def basic_authorization(client_id: str, client_secret: str) -> str:
    """An RFC 6749 2.3.1 Basic header: both halves form-urlencoded before base64."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


# --- the server under test ------------------------------------------------------------------------


@dataclass
class Target:
    """The server under test: its URL and the environment its `idp` processes run with."""

    base_url: str
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    issuer: str = ""
    pid: int | None = None  # the server's process (root of its tree), when the benchmark started it

    def __post_init__(self) -> None:
        self.issuer = self.issuer or self.env.get("IDP_ISSUER") or self.base_url

    def idp(self, *args: str, stdin: str | None = None) -> str:
        """Run the `idp` CLI against the server's database; its stdout, or BenchError."""
        done = subprocess.run([sys.executable, "-m", "idp", *args], env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BenchError(f"idp {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def app(self):
        """A Flask app on the server's database and secrets, for service-level set-up."""
        from idp import config, create_app

        return create_app(config.load(environ=self.env))

    def http(self) -> Http:
        return Http(self.base_url)


# --- load loop and statistics -----------------------------------------------------------------------


@dataclass
class Run:
    """One timed run at one concurrency level."""

    concurrency: int
    requests: int
    errors: int
    elapsed: float
    latencies: list[float] = field(repr=False)
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the successful requests' latencies, in seconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def summary(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "requests": self.requests, "errors": self.errors,
                "elapsed_s": round(self.elapsed, 4), "rps": round(self.rps, 1),
                "p50_ms": round(self.percentile(50) * 1000, 3), "p99_ms": round(self.percentile(99) * 1000, 3),
                "first_error": self.first_error}


def run_load(base_url: str, request: RequestFn, concurrency: int, duration: float, max_requests: int) -> Run:
    """`concurrency` threads call `request` back to back, each on its own connection, until
    `duration` seconds have passed or `max_requests` requests were sent (bounded both ways)."""
    per_thread = max(1, math.ceil(max_requests / concurrency))
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    first_errors: list[str] = []
    start_line = threading.Barrier(concurrency + 1)

    def worker(index: int) -> None:
        http = Http(base_url)
        own = latencies[index]
        start_line.wait()
        deadline = time.perf_counter() + duration
        try:
            for _ in range(per_thread):
                began = time.perf_counter()
                if began >= deadline:
                    break
                try:
                    request(http)
                except Exception as error:  # noqa: BLE001 - every failure is counted, none stops the run
                    errors[index] += 1
                    if not first_errors:
                        first_errors.append(f"{type(error).__name__}: {error}")
                    continue
                own.append(time.perf_counter() - began)
        finally:
            http.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start_line.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    merged = [value for own in latencies for value in own]
    return Run(concurrency, len(merged), sum(errors), elapsed, merged, first_errors[0] if first_errors else None)


@dataclass
class Level:
    """Every run of one scenario at one concurrency level, reduced to medians."""

    scenario: str
    concurrency: int
    runs: list[Run]

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    def median(self, metric: Callable[[Run], float]) -> float:
        return statistics.median(metric(run) for run in self.runs)

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "concurrency": self.concurrency,
            "median_rps": round(self.median(lambda run: run.rps), 1),
            "median_p50_ms": round(self.median(lambda run: run.percentile(50)) * 1000, 3),
            "median_p99_ms": round(self.median(lambda run: run.percentile(99)) * 1000, 3),
            "errors": self.errors,
            "runs": [run.summary() for run in self.runs],
        }
