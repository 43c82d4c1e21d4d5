"""`python -m bench --compare`: the IdP and node-oidc-provider side by side, driven by the same wrk.

Three servers run at once: `idp serve` on PostgreSQL with its defaults, node-oidc-provider with its
in-memory adapter in one process, and in a 2-process `cluster`. For every scenario and concurrency
each side gets a warm-up, then the measured runs take turns (idp, node 1, node 2, idp, ...) so that
drift in the machine's load falls on all of them alike. A side that cannot run a scenario says why.
"""

from __future__ import annotations

import base64
import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

from bench.harness import BenchError, Http, Target, basic_authorization
from bench.loadgen import WrkRun, WrkSpec, medians, run_wrk, wait_idle
from bench.node_server import NodeTarget
from bench.scenarios.oauth import SCOPE, AccessTokens, Seed, endpoint_path
from bench.scenarios.wellknown import DISCOVERY

REDIRECT_URI = "http://127.0.0.1/callback"
# RFC 7636 4.1: one verifier for every pre-minted code, its S256 challenge stored with each.
CODE_VERIFIER = "bench-code-verifier-" + "v" * 40
CODE_CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(CODE_VERIFIER.encode()).digest()).rstrip(b"=").decode()
SIGNIN_PASSWORD = "bench-password-not-secret"
SIGNIN_USERS = 4


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    min_seconds: int = 1  # a run shorter than this may end before its first operation completes


SCENARIOS = [
    Scenario("cc_rs256", "token, client_credentials, RS256 JWT"),
    Scenario("cc_es256", "token, client_credentials, ES256 JWT"),
    Scenario("jwks", "JWKS"),
    Scenario("discovery", "discovery"),
    Scenario("introspection", "introspection (idp: JWT + denylist; node: opaque)"),
    Scenario("userinfo", "userinfo (bearer)"),
    Scenario("refresh_one_user", "refresh rotation, closed loop, one user"),
    Scenario("refresh_many_users", "refresh rotation, closed loop, one user per chain"),
    Scenario("code_exchange", "token, authorization_code + PKCE (pre-minted)"),
    # One sign-in is an argon2id hash at the app's parameters: hundreds of ms on a loaded machine.
    Scenario("password_signin", "password sign-in (GET form + POST)", min_seconds=5),
]
NAMES = [scenario.name for scenario in SCENARIOS]


def form(data: dict[str, str]) -> str:
    """application/x-www-form-urlencoded, the "{token}" placeholder kept for the wrk script to fill."""
    return urlencode(data, safe="{}")


def token_post(path: str, client: tuple[str, str], body: dict[str, str], script: str = "fixed",
               tokens: Callable[[int], list[str]] | None = None) -> WrkSpec:
    """A token-endpoint style POST with client_secret_basic (RFC 6749 2.3.1)."""
    return WrkSpec(script, path, "POST", {"Content-Type": "application/x-www-form-urlencoded",
                                          "Authorization": basic_authorization(*client)}, form(body), tokens=tokens)


def check_answer(base_url: str, spec: WrkSpec, test: Callable[[Any], bool], what: str) -> None:
    """Send a fixed scenario's request once before loading it: a wrong set-up fails here, loudly."""
    with Http(base_url) as http:
        answer = http.request(spec.method, spec.path, body=spec.body.encode() or None, headers=spec.headers,
                              expect=spec.expect)
    if not test(answer.json()):
        raise BenchError(f"{what}: unexpected answer {answer.body[:300]!r}")


# --- the IdP ------------------------------------------------------------------------------------


class IdpSide:
    """`idp serve` under test, set up through the app's own services on its database."""

    name = "idp"

    def __init__(self, target: Target, database_url: str):
        self.target, self.base_url = target, target.base_url
        self.seed = Seed(target)
        self._users: list[int] = []
        from sqlalchemy import create_engine

        from idp.config import normalize_database_url

        self._engine = create_engine(normalize_database_url(database_url), pool_size=1)

    def server_pids(self) -> list[int]:
        return [self.target.pid]

    def database_pids(self) -> list[int]:
        """The PostgreSQL backends serving the server's database (not this process's own)."""
        from sqlalchemy import text

        with self._engine.connect() as connection:
            return list(connection.scalars(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")))

    def close(self) -> None:
        self._engine.dispose()

    def path(self, member: str) -> str:
        return endpoint_path(self.target, member)

    def spec(self, name: str) -> WrkSpec | str:
        """The scenario's request on the IdP, or why it has none."""
        token_path = self.path("token_endpoint")
        if name == "cc_rs256":
            client_id, secret, _ = self.seed.client("bench cc", ["client_credentials"])
            return token_post(token_path, (client_id, secret), {"grant_type": "client_credentials"})
        if name == "cc_es256":
            return "idp signs client_credentials access tokens with RS256 only (no per-client access-token alg)"
        if name == "jwks":
            return WrkSpec("fixed", urlsplit(self._discovery()["jwks_uri"]).path)
        if name == "discovery":
            return WrkSpec("fixed", DISCOVERY)
        if name == "introspection":
            token = AccessTokens(self.seed, "bench introspected rp").current()
            rs_id, rs_secret, _ = self.seed.client("bench resource server", ["client_credentials"])
            return token_post(self.path("introspection_endpoint"), (rs_id, rs_secret),
                              {"token": token, "token_type_hint": "access_token"})
        if name == "userinfo":
            token = AccessTokens(self.seed, "bench userinfo").current()
            return WrkSpec("fixed", self.path("userinfo_endpoint"), headers={"Authorization": f"Bearer {token}"})
        if name in ("refresh_one_user", "refresh_many_users"):
            client_id, secret, row_id = self.seed.client("bench refresh", ["authorization_code", "refresh_token"])
            one_user = self.seed.user().id
            mint = ((lambda n: self._families(row_id, [one_user] * n)) if name == "refresh_one_user"
                    else (lambda n: self._families(row_id, self._many_users(n))))
            return token_post(token_path, (client_id, secret), {"grant_type": "refresh_token", "refresh_token": "{token}"},
                              "chain", mint)
        if name == "code_exchange":
            client_id, secret, row_id = self.seed.client("bench code", ["authorization_code", "refresh_token"])
            user_id = self.seed.user().id
            return token_post(token_path, (client_id, secret), {
                "grant_type": "authorization_code", "code": "{token}", "redirect_uri": REDIRECT_URI,
                "code_verifier": CODE_VERIFIER}, "pool", lambda n: self._codes(row_id, user_id, n))
        if name == "password_signin":
            users = [self.seed.user(f"bench-signin-{i}@example.com").email for i in range(SIGNIN_USERS)]
            lines = [f"{email} {SIGNIN_PASSWORD}" for email in users]
            spec = WrkSpec("signin", "/login", tokens=lambda n: lines)
            spec.note = "rate is sign-ins/s (2 requests each); latencies are of both requests"
            return spec
        raise BenchError(f"unknown scenario {name}")

    def _discovery(self) -> dict:
        with self.target.http() as http:
            return http.get(DISCOVERY).json()

    def _families(self, client_row_id: int, user_ids: list[int]) -> list[str]:
        """One new refresh family per user id given (repeats allowed), through `start_family`."""
        from idp.clock import utcnow
        from idp.db import db
        from idp.models import Client, User
        from idp.tokens.refresh import start_family

        with self.seed.app.app_context():
            client = db.session.get(Client, client_row_id)
            tokens = [start_family(client=client, user=db.session.get(User, user_id), scope=SCOPE, offline=True,
                                   auth_time=utcnow()).token for user_id in user_ids]
            db.session.commit()
        return tokens

    def _many_users(self, count: int) -> list[int]:
        """`count` distinct users without a password (a refresh never asks for one), made once."""
        from sqlalchemy import insert

        from idp.db import db
        from idp.models import User

        if len(self._users) < count:
            with self.seed.app.app_context():
                rows = [{"subject": uuid.uuid4().hex, "email": f"bench-chain-{uuid.uuid4().hex[:12]}@example.com",
                         "name": "Bench Chain"} for _ in range(count - len(self._users))]
                self._users += list(db.session.scalars(insert(User).returning(User.id), rows))
                db.session.commit()
        return self._users[:count]

    def _codes(self, client_row_id: int, user_id: int, count: int) -> list[str]:
        """`count` authorization codes stored as `save_code` stores them, in one multi-row INSERT."""
        from flask import current_app
        from sqlalchemy import insert

        from idp.clock import utcnow
        from idp.db import db
        from idp.models import User
        from idp.oauth.codes import new_code_value
        from idp.oauth.models import AuthorizationCode
        from idp.security import digest

        with self.seed.app.app_context():
            now, user = utcnow(), db.session.get(User, user_id)
            expires = now + timedelta(seconds=current_app.config["AUTHORIZATION_CODE_TTL"])
            values = [new_code_value() for _ in range(count)]
            db.session.execute(insert(AuthorizationCode), [{
                "code_digest": digest(value), "client_id": client_row_id, "user_id": user_id, "redirect_uri": REDIRECT_URI,
                "scope": SCOPE, "code_challenge": CODE_CHALLENGE, "code_challenge_method": "S256", "auth_time": now,
                "amr": ["pwd"], "token_version": user.token_version, "created_at": now, "expires_at": expires,
            } for value in values])
            db.session.commit()
        return values


# --- node-oidc-provider -------------------------------------------------------------------------


class NodeSide:
    """node-oidc-provider under test; tokens are minted in its memory through /__bench/mint."""

    def __init__(self, node: NodeTarget, name: str):
        self.node, self.name, self.base_url = node, name, node.base_url

    def server_pids(self) -> list[int]:
        return [self.node.pid]

    def database_pids(self) -> list[int]:
        return []

    def close(self) -> None:
        pass

    def client(self, client_id: str) -> tuple[str, str]:
        return client_id, self.node.secrets[client_id]

    def spec(self, name: str) -> WrkSpec | str:
        """The scenario's request on node, or why it has none."""
        if name == "password_signin":
            return "node-oidc-provider has no account store: its dev login form checks no password"
        stateful = name not in ("cc_rs256", "cc_es256", "jwks", "discovery")
        if stateful and self.node.workers > 1:
            return "the in-memory adapter is per process: tokens minted in one worker are unknown to the other"
        if name in ("cc_rs256", "cc_es256"):
            return token_post("/token", self.client(name.replace("_", "-")), {"grant_type": "client_credentials"})
        if name == "jwks":
            return WrkSpec("fixed", "/jwks")
        if name == "discovery":
            return WrkSpec("fixed", DISCOVERY)
        if name == "introspection":
            token = self.node.mint("access", 1)[0]
            return token_post("/token/introspection", self.client("rs"), {"token": token, "token_type_hint": "access_token"})
        if name == "userinfo":
            return WrkSpec("fixed", "/me", headers={"Authorization": f"Bearer {self.node.mint('access', 1)[0]}"})
        if name == "refresh_one_user":
            return token_post("/token", self.client("rp"), {"grant_type": "refresh_token", "refresh_token": "{token}"},
                              "chain", lambda n: self.node.mint("refresh", n))
        if name == "refresh_many_users":
            return token_post("/token", self.client("rp"), {"grant_type": "refresh_token", "refresh_token": "{token}"},
                              "chain", lambda n: self.node.mint("refresh", n, subjects=[f"user-{i}" for i in range(n)]))
        if name == "code_exchange":
            return token_post("/token", self.client("rp"), {
                "grant_type": "authorization_code", "code": "{token}", "redirect_uri": REDIRECT_URI,
                "code_verifier": CODE_VERIFIER}, "pool", lambda n: self.node.mint("code", n, code_challenge=CODE_CHALLENGE))
        raise BenchError(f"unknown scenario {name}")


# --- the runs -----------------------------------------------------------------------------------

ANSWER_CHECKS: dict[str, Callable[[Any], bool]] = {
    "cc_rs256": lambda body: body.get("token_type", "").lower() == "bearer" and body["access_token"].count(".") == 2,
    "cc_es256": lambda body: body.get("token_type", "").lower() == "bearer" and body["access_token"].count(".") == 2,
    "jwks": lambda body: {key["alg"] for key in body["keys"]} >= {"RS256", "ES256"},
    "discovery": lambda body: "token_endpoint" in body,
    "introspection": lambda body: body.get("active") is True,
    "userinfo": lambda body: bool(body.get("sub")),
}


def idle_window(duration: int) -> float:
    """How long each look of the idle check after a run lasts: a tenth of `-d`, 0.1 to 0.25 s.

    Work still queued (sign-ins hashing) keeps a core busy, which a 0.1 s look (10 clock ticks)
    sees as well as a 0.25 s one: `-d 3` and more keep 0.25 s (warm-ups too), a 1 s smoke run
    (tests/functional/test_bench.py: 22 runs) waits less."""
    return min(0.25, max(0.1, duration / 10))


class Runner:
    """Runs one scenario on every side: warm-up, then the measured runs in turn; medians per side."""

    def __init__(self, levels: list[int], duration: int, repeats: int, warmup: int, progress: Callable[[str], None]):
        self.levels, self.duration, self.repeats, self.warmup, self.progress = levels, duration, repeats, warmup, progress
        self._rate: dict[tuple[str, str], float] = {}

    def tokens_for(self, side, name: str, spec: WrkSpec, concurrency: int, duration: int) -> list[str] | None:
        if spec.tokens is None:
            return None
        if spec.script == "chain":
            # One chain per connection (closed loop), and one more per wrk thread: wrk calls thread 0's
            # request() once before the run to check it, which takes a token that is never sent.
            return spec.tokens(concurrency + min(2, concurrency))
        if spec.script == "pool":
            # Each request spends a code: mint twice what the last run of this side managed (before
            # its first run, enough for 10,000 a second: node on an idle machine exceeds 3,000).
            rate = self._rate.get((side.name, name), 10_000.0)
            return spec.tokens(max(2000, math.ceil(rate * duration * 2)))
        return spec.tokens(0)

    def one_run(self, side, name: str, spec: WrkSpec, concurrency: int, duration: int) -> WrkRun:
        tokens = self.tokens_for(side, name, spec, concurrency, duration)
        run = run_wrk(side.base_url, spec, concurrency, duration, tokens, side.server_pids, side.database_pids)
        wait_idle(lambda: side.server_pids() + side.database_pids(), window=idle_window(self.duration))
        self._rate[(side.name, name)] = max(run.rps, 1.0)
        return run

    def scenario(self, sides: list, name: str) -> dict[str, Any]:
        """{side: {concurrency: medians} or {"n/a": reason}} for one scenario."""
        specs = {side.name: side.spec(name) for side in sides}
        active = [side for side in sides if isinstance(specs[side.name], WrkSpec)]
        for side in active:
            spec = specs[side.name]
            if name in ANSWER_CHECKS:
                check_answer(side.base_url, spec, ANSWER_CHECKS[name], f"{side.name} {name}")
        result: dict[str, Any] = {side.name: {"n/a": specs[side.name]} for side in sides if side not in active}
        duration = max(self.duration, next(scenario.min_seconds for scenario in SCENARIOS if scenario.name == name))
        for concurrency in self.levels:
            runs: dict[str, list[WrkRun]] = {side.name: [] for side in active}
            if self.warmup:
                for side in active:
                    self.one_run(side, name, specs[side.name], concurrency, self.warmup)
            for repeat in range(self.repeats):
                for side in active:
                    run = self.one_run(side, name, specs[side.name], concurrency, duration)
                    runs[side.name].append(run)
                    self.progress(f"  {name} c={concurrency} {side.name} run {repeat + 1}/{self.repeats}: {run.rps:.1f}/s, "
                                  f"p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms, server CPU {run.server_cpu_s:.2f} s"
                                  f" + db {run.database_cpu_s:.2f} s, wrk CPU {run.generator_cpu_s:.2f} s"
                                  + (f", {run.errors} errors ({run.first_error})" if run.errors else ""))
            for side in active:
                result.setdefault(side.name, {})[concurrency] = medians(runs[side.name])
        for side in active:
            if specs[side.name].note:
                result[side.name]["note"] = specs[side.name].note
        return result


def _cell(level: dict | None) -> str:
    if not level:
        return "-"
    return f"{level['rps']:,.0f} ({level['p50_ms']:.1f}/{level['p99_ms']:.0f})"


def compare_table(results: dict[str, dict], levels: list[int], sides: list[str]) -> str:
    """ONE table: req/s (p50/p99 ms) per side, the ratio to node's single process, CPU s per 1000."""
    head = (f"{'scenario':<50} {'c':>3}  {'idp req/s (p50/p99 ms)':>24} {'node 1 process':>22} {'node 2 processes':>22}"
            f" {'idp/node1':>9}  {'CPU s/1000: idp+pg':>18} {'node1':>6} {'node2':>6} {'wrk CPU':>7}")
    lines, notes = [head], []
    for scenario in SCENARIOS:
        per_side = results.get(scenario.name)
        if per_side is None:
            continue
        for side in sides:
            reason = per_side.get(side, {}).get("n/a")
            if reason:
                notes.append(f"{scenario.name}, {side}: n/a: {reason}")
            if per_side.get(side, {}).get("note"):
                notes.append(f"{scenario.name}, {side}: {per_side[side]['note']}")
        for concurrency in levels:
            level = {side: per_side.get(side, {}).get(concurrency) for side in sides}
            idp, node1 = level.get("idp"), level.get("node1")
            ratio = f"{idp['rps'] / node1['rps']:.2f}" if idp and node1 and node1["rps"] else "-"
            cpu = {side: f"{level[side]['cpu_s_per_1000']:.2f}" if level.get(side) else "-" for side in sides}
            generator = max((value["generator_cpu_share"] for value in level.values() if value), default=0)
            errors = sum(value["errors"] for value in level.values() if value)
            lines.append(
                f"{scenario.label:<50} {concurrency:>3}  {_cell(level.get('idp')):>24} {_cell(level.get('node1')):>22}"
                f" {_cell(level.get('node2')):>22} {ratio:>9}  {cpu.get('idp', '-'):>18} {cpu.get('node1', '-'):>6}"
                f" {cpu.get('node2', '-'):>6} {generator:>6.0%}" + (f"  ERRORS {errors}" if errors else ""))
    lines.append("wrk CPU: the generator's own CPU time over wall time (100% = one core), the busiest side of the row")
    return "\n".join(lines + notes)


def scale_table(empty: dict[str, dict], scaled: dict[str, dict], levels: list[int]) -> str:
    """Each IdP scenario, empty database against the seeded one: req/s (p99), CPU s per 1000, ratios.

    CPU per operation is the steadier of the two on a shared machine: req/s also moves with the
    share of the cores the server gets, CPU per operation much less."""
    lines = [f"{'scenario':<50} {'c':>3}  {'empty req/s (p99 ms)':>21} {'at scale (p99 ms)':>18} {'scale/empty':>11}"
             f"  {'CPU s/1000 empty':>16} {'at scale':>8} {'scale/empty':>11}"]
    for scenario in SCENARIOS:
        before, after = empty.get(scenario.name, {}).get("idp", {}), scaled.get(scenario.name, {}).get("idp", {})
        if "n/a" in before:
            continue
        for concurrency in levels:
            one, two = before.get(concurrency), after.get(concurrency)
            if not one or not two:
                continue
            ratio = f"{two['rps'] / one['rps']:.2f}" if one["rps"] else "-"
            cpu_one, cpu_two = one["cpu_s_per_1000"], two["cpu_s_per_1000"]
            cpu_ratio = f"{cpu_two / cpu_one:.2f}" if cpu_one == cpu_one and cpu_two == cpu_two and cpu_one else "-"
            lines.append(f"{scenario.label:<50} {concurrency:>3}  {one['rps']:>11,.0f} ({one['p99_ms']:>5.0f})"
                         f" {two['rps']:>9,.0f} ({two['p99_ms']:>5.0f}) {ratio:>11}  {cpu_one:>16.2f} {cpu_two:>8.2f}"
                         f" {cpu_ratio:>11}")
    return "\n".join(lines)