"""Metrics and logs of a real `idp serve` (2 gunicorn workers): counted by every worker, nothing secret logged."""

from __future__ import annotations

import json
import os
import re
import signal
from datetime import timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from idp.clock import utcnow
from idp.db import db
from idp.models import JobRun
from tests.oidc.flow import refresh, sign_in
from tests.support import wait_until

REDIRECT_URI = "http://127.0.0.1:8765/callback"
PASSWORD = "observed passphrase 4711"


def samples_of(text: str) -> dict[tuple, float]:
    """Every sample of a Prometheus text exposition by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(base: str) -> dict[tuple, float]:
    """Every sample of a served /metrics."""
    response = requests.get(base + "/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return samples_of(response.text)


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the web server's part; the database's is below
def test_served_metrics_count_every_worker_and_logs_are_json_without_secrets(start_server, make_user, make_client, app, tmp_path):
    base = start_server(IDP_LOG_LEVEL="INFO")
    user = make_user(email="observed@example.com", password=PASSWORD)
    rp, rp_secret = make_client(name="Observed RP", redirect_uris=[REDIRECT_URI])
    machine, machine_secret = make_client(name="Machine", grant_types=["client_credentials"], redirect_uris=[], scope="profile")
    before = scrape(base)

    signed_in = sign_in(base, client_id=rp.client_id, client_secret=rp_secret, redirect_uri=REDIRECT_URI, email=user.email, password=PASSWORD)
    renewed = refresh(base, signed_in, client_id=rp.client_id, client_secret=rp_secret)
    machine_tokens = [
        requests.post(base + "/token", data={"grant_type": "client_credentials"}, auth=(machine.client_id, machine_secret), timeout=30).json()["access_token"]
        for _ in range(5)
    ]
    for _ in range(20):  # a fresh connection each: the kernel spreads them over both workers
        assert requests.get(base + "/healthz", timeout=30).status_code == 200
    echoed = requests.get(base + "/healthz", headers={"X-Request-Id": "lb-0123456789"}, timeout=30)
    assert echoed.headers["X-Request-Id"] == "lb-0123456789"
    generated = requests.get(base + "/healthz", headers={"X-Request-Id": "bad {id} \"x\""}, timeout=30).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)

    after = scrape(base)
    healthz = dict(endpoint="health.healthz", method="GET", status="200")
    assert value(after, "idp_http_requests_total", **healthz) - value(before, "idp_http_requests_total", **healthz) == 22
    assert value(after, "idp_http_request_duration_seconds_count", endpoint="health.healthz") - value(before, "idp_http_request_duration_seconds_count", endpoint="health.healthz") == 22
    assert value(after, "idp_http_requests_total", endpoint="oauth.authorize", method="GET", status="302") >= 1
    for grant_type, issued in (("authorization_code", 1), ("refresh_token", 1), ("client_credentials", 5)):
        assert value(after, "idp_tokens_issued_total", grant_type=grant_type) == issued, grant_type

    log_path = tmp_path / f"serve-{base.rsplit(':', 1)[1]}.log"
    log = log_path.read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one JSON event
    access = [entry for entry in entries if entry["logger"] == "gunicorn.access"]
    # Both workers answered /healthz, and the summed count above is exact: every worker is counted.
    assert len({entry["pid"] for entry in access if entry["http"]["path"] == "/healthz"}) == 2
    assert any(entry.get("request_id") == "lb-0123456789" for entry in access)
    assert any(entry.get("request_id") == generated for entry in access)
    authorize = [entry for entry in access if entry["http"]["path"] == "/authorize"]
    assert authorize and all("?" not in json.dumps(entry) and "state" not in json.dumps(entry) for entry in authorize)
    # A worker that dies takes nothing with it: its counts stay, and a new worker takes its place.
    folder = next(entry["message"].rsplit(" ", 1)[1] for entry in entries if entry["logger"] == "idp.serve")
    master = next(entry["pid"] for entry in entries if entry["message"].startswith("Listening at"))
    os.kill(access[0]["pid"], signal.SIGKILL)
    for _ in range(5):
        assert requests.get(base + "/healthz", timeout=30).status_code == 200
    assert value(scrape(base), "idp_http_requests_total", **healthz) - value(before, "idp_http_requests_total", **healthz) == 27
    assert os.path.isdir(folder)
    os.kill(master, signal.SIGTERM)  # as the fixture would: the folder goes with the server
    wait_until(lambda: not os.path.exists(folder), timeout=60, what="the metrics folder to be removed")

    secrets_used = [
        PASSWORD, rp_secret, machine_secret, signed_in.callback["code"], signed_in.callback["state"], *machine_tokens,
        *(signed_in.tokens[name] for name in ("access_token", "refresh_token", "id_token")),
        *(renewed[name] for name in ("access_token", "refresh_token", "id_token")),
    ]
    log = log_path.read_text()
    for secret in secrets_used:
        assert secret not in log


def test_metrics_switch_allow_list_and_sign_in_counters(app, client, config, make_user):
    from prometheus_client import REGISTRY

    from idp import create_app
    from idp.config import ConfigError, load
    from tests.oidc.flow import csrf_token

    assert load({"ISSUER": "http://127.0.0.1:8000"})["METRICS"] is True
    assert load({"ISSUER": "https://login.example.com"})["METRICS"] is False  # off unless asked for in production
    with pytest.raises(ConfigError, match="not-a-network"):
        load({}, environ={"IDP_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,not-a-network"})

    with app.app_context():
        started = utcnow() - timedelta(seconds=30)
        db.session.add(JobRun(job="purge", started_at=started - timedelta(minutes=10), finished_at=started, outcome="failed", counts={}))
        db.session.add(JobRun(job="purge", started_at=started, finished_at=started + timedelta(seconds=2.5), outcome="succeeded", counts={}))
        db.session.commit()
    response = client.get("/metrics")  # the test client comes from 127.0.0.1
    assert response.status_code == 200
    scraped = samples_of(response.get_data(as_text=True))
    assert value(scraped, "idp_job_runs", job="purge", outcome="succeeded") == value(scraped, "idp_job_runs", job="purge", outcome="failed") == 1
    assert value(scraped, "idp_job_last_duration_seconds", job="purge", outcome="succeeded") == 2.5  # the last one only
    assert value(scraped, "idp_job_last_duration_seconds", job="purge", outcome="failed") == 0
    ages = {dict(labels)["state"]: sample for (name, labels), sample in scraped.items() if name == "idp_signing_key_age_seconds" and dict(labels)["alg"] == "RS256"}
    assert set(ages) == {"active", "next"} and all(age >= 0 for age in ages.values())
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    app.config["METRICS_ALLOWED_NETWORKS"] = ["203.0.113.0/24"]
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
    assert create_app({**config, "METRICS": False}).test_client().get("/metrics").status_code == 404

    user = make_user(email="counted@example.com")
    app.config["LOGIN_THROTTLE_PER_ACCOUNT"] = 2
    failures, throttled = (REGISTRY.get_sample_value(name) or 0 for name in ("idp_login_failures_total", "idp_login_throttled_total"))
    for _ in range(3):
        form = {"csrf_token": csrf_token(client.get("/login").get_data(as_text=True)), "username": user.email, "password": "wrong"}
        client.post("/login", data=form)
    assert REGISTRY.get_sample_value("idp_login_failures_total") - failures == 2
    assert REGISTRY.get_sample_value("idp_login_throttled_total") - throttled == 1
