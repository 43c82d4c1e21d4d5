"""Discovery, JWKS and health endpoints over Flask's test client."""

import json

import pytest

from tests.support import free_port


def test_discovery_issuer_comes_from_configuration_not_host_header(client):
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        response = client.get(path, headers={"Host": "evil.example.com", "X-Forwarded-Host": "evil.example.com"})
        assert response.status_code == 200
        document = response.get_json()
        assert document["issuer"] == "http://localhost"
        assert document["jwks_uri"] == "http://localhost/.well-known/jwks.json"
        assert "evil" not in response.get_data(as_text=True)


def test_jwks_is_cacheable_with_etag_and_answers_304(client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.mimetype == "application/jwk-set+json"
    assert "max-age=300" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    keys = json.loads(response.data)["keys"]
    assert {key["alg"] for key in keys} == {"RS256", "ES256"}
    assert all("d" not in key for key in keys)
    again = client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    other = client.get("/.well-known/jwks.json", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/.well-known/openid-configuration", "/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_unknown_methods_are_405_not_500(client, path, method):
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_readiness_fails_when_database_is_unreachable(make_app):
    broken = make_app(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.get_json()["database"] == "unreachable"


def test_readiness_fails_when_the_broker_is_unreachable_and_logs_it_once(make_app, caplog):
    broken = make_app(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    for _ in range(3):
        response = broken.get("/readyz")
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert response.get_json() == {"status": "unavailable", "database": "ok", "broker": "unreachable"}
    outage = [record for record in caplog.records if record.name == "idp.outages"]
    assert [record.getMessage().split(" (")[0] for record in outage] == ["task broker unavailable"]
    assert all(record.exc_info is None for record in caplog.records)


def test_error_pages_escape_the_request(client):
    response = client.get("/<script>alert(1)</script>", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert b"<script>" not in response.data
