"""`/metrics`: request counting hooks, figures read from the database at scrape time, the allow-list."""

from __future__ import annotations

import ipaddress
import os
import time

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from idp.clock import utcnow
from idp.db import db
from idp.jobs.models import JobRun
from idp.jobs.service import last_runs
from idp.keyring.models import SigningKey
from idp.metrics import HTTP_LATENCY, HTTP_REQUESTS

bp = Blueprint("metrics", __name__)

METRICS_PATH = "/metrics"


def init_metrics(app: Flask) -> None:
    """Count every request and serve `/metrics`, when IDP_METRICS is on."""
    if not app.config["METRICS"]:
        return
    app.before_request(_start_timer)
    app.after_request(_count_request)
    app.register_blueprint(bp)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


# (endpoint, method, status) -> the two labelled children: `labels()` validates and locks on every
# call, a dict lookup does not. Filled while serving, so after `idp serve` has forked its workers.
_children: dict[tuple[str, str, int], tuple] = {}


def _count_request(response: Response) -> Response:
    # The endpoint's name, never the path: label values must come from a fixed set.
    key = (request.endpoint or "unmatched", request.method, response.status_code)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (HTTP_REQUESTS.labels(key[0], key[1], str(key[2])), HTTP_LATENCY.labels(key[0]))
    children[0].inc()
    if "metrics_started" in g:
        children[1].observe(time.perf_counter() - g.metrics_started)
    return response


def allowed(address: str | None) -> bool:
    """The scraper's address is in IDP_METRICS_ALLOWED_NETWORKS."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in current_app.config["METRICS_ALLOWED_NETWORKS"])


class DatabaseCollector:
    """Figures the database holds, read at scrape time, so a worker's job runs count wherever it runs."""

    def collect(self):
        now = utcnow()
        ages = GaugeMetricFamily("idp_signing_key_age_seconds", "Seconds since each signing key was published, by algorithm and state.", labels=["alg", "state", "kid"])
        for key in db.session.scalars(select(SigningKey)):
            ages.add_metric([key.alg, key.state.value, key.kid], (now - key.created_at).total_seconds())
        yield ages
        runs = GaugeMetricFamily("idp_job_runs", "Job runs on record (kept for IDP_JOB_RUN_RETENTION), by job and outcome.", labels=["job", "outcome"])
        for job, outcome, count in db.session.execute(select(JobRun.job, JobRun.outcome, func.count()).group_by(JobRun.job, JobRun.outcome)):
            runs.add_metric([job, outcome], count)
        yield runs
        durations = GaugeMetricFamily("idp_job_last_duration_seconds", "Duration of each job's last run, once it has finished.", labels=["job", "outcome"])
        for run in last_runs():
            if run.finished_at is not None:
                durations.add_metric([run.job, run.outcome], (run.finished_at - run.started_at).total_seconds())
        yield durations


@bp.get(METRICS_PATH)
def metrics():
    """Prometheus text exposition of every worker's counters plus the database's figures."""
    if not allowed(request.remote_addr):
        abort(403)
    counted = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        counted = CollectorRegistry()
        MultiProcessCollector(counted)
    from_database = CollectorRegistry()
    from_database.register(DatabaseCollector())
    return Response(generate_latest(counted) + generate_latest(from_database), mimetype=CONTENT_TYPE_LATEST)
