"""Prometheus metrics the code counts as it runs (a leaf: anything may import it).

Under `idp serve` prometheus-client runs in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, made and
removed by the command before gunicorn forks), so every worker's counts are summed at `/metrics`;
elsewhere (tests, one process) they live in the process. Label values are always drawn from a
small fixed set (endpoint names, grant types, status codes), never from input. The figures read
from the database at scrape time (job runs, signing keys) are in `idp/metrics/views.py`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, values

HTTP_REQUESTS = Counter("idp_http_requests", "HTTP requests answered, by endpoint, method and status.", ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram(
    "idp_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint.", ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TOKENS_ISSUED = Counter("idp_tokens_issued", "Token responses issued by the token endpoint, by grant type.", ["grant_type"])
REFRESH_REUSE = Counter("idp_refresh_token_reuse_detected", "Spent refresh tokens presented again: their families revoked (RFC 9700 4.14.2).")
REFRESH_GRACE = Counter("idp_refresh_token_grace_redeemed", "Just-rotated refresh tokens redeemed again within the reuse grace.")
LOGIN_FAILURES = Counter("idp_login_failures", "Sign-ins refused for a wrong email or password.")
LOGIN_THROTTLED = Counter("idp_login_throttled", "Sign-ins refused by the throttle without checking the password.")


def use_multiprocess_storage() -> None:
    """Keep every count in PROMETHEUS_MULTIPROC_DIR's files from now on (`idp serve`, before it forks).

    prometheus-client picks its storage when it is imported, and importing the package imports
    these counters: the class is picked again, and the unlabelled counters, which hold their value
    from birth, are set up again (labelled ones make each child's value when first used).
    """
    values.ValueClass = values.get_value_class()
    for metric in (REFRESH_REUSE, REFRESH_GRACE, LOGIN_FAILURES, LOGIN_THROTTLED):
        metric._metric_init()
