"""What every relying party and resource server fetches first: the discovery document and the JWKS."""

from bench import BenchError, Target, scenario
from bench.harness import Response, get

DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/.well-known/jwks.json"


def fetch(target: Target, path: str) -> Response:
    """One GET during set-up, on a connection of its own."""
    with target.http() as http:
        return http.get(path)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


@scenario("discovery", f"GET {DISCOVERY}")
def discovery(target: Target):
    issuer = fetch(target, DISCOVERY).json()["issuer"]
    check(issuer == target.issuer, f"discovery names issuer {issuer!r}, expected {target.issuer!r}")
    return get(DISCOVERY)


@scenario("jwks", f"GET {JWKS}, full body")
def jwks(target: Target):
    algorithms = sorted(key["alg"] for key in fetch(target, JWKS).json()["keys"])
    check(set(algorithms) == {"RS256", "ES256"}, f"the JWKS holds {algorithms}, expected RS256 and ES256")
    return get(JWKS)


@scenario("jwks_304", f"GET {JWKS} with If-None-Match (a cache revalidating)")
def jwks_not_modified(target: Target):
    return get(JWKS, headers={"If-None-Match": fetch(target, JWKS).headers["ETag"]}, expect=304)
