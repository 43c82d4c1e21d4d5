"""Load benchmark of a real `idp serve` (gunicorn) on PostgreSQL: `make bench` / `python -m bench`.

For each named scenario and each concurrency level it runs several timed runs and reports the
medians of requests per second and of p50/p99 latency. Adding a scenario is one function in a
module under `bench/scenarios/` (every module there is loaded):

    from bench import scenario

    @scenario("jwks", "GET /.well-known/jwks.json")
    def jwks(target):                       # once per benchmark: create clients, users, tokens
        def request(http):                  # once per request, on a worker thread
            http.get("/.well-known/jwks.json")
        return request

`target` (bench.harness.Target) gives the server's `base_url`, an `idp(...)` runner for the CLI
with the server's environment, and `app()` for service-level set-up. `http` (bench.harness.Http)
is the calling thread's own keep-alive connection; `http.state` is a dict that lives for one run
of that thread (e.g. the current refresh token of a rotation chain). A request that raises,
or answers another status than expected, counts as an error.
"""

from bench.harness import SCENARIOS, BenchError, Http, Scenario, Target, scenario

__all__ = ["SCENARIOS", "BenchError", "Http", "Scenario", "Target", "scenario"]
