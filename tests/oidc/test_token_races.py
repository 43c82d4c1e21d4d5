"""Concurrent use of one refresh token or one code against a real `idp serve`: at most one success."""

import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.oidc.conftest import PASSWORD
from tests.oidc.flow import follow_to_client, pkce_pair, sign_in

pytestmark = pytest.mark.slow
RACERS = 12
REDIRECT_URI = "http://127.0.0.1:9/callback"


def race(url: str, data: dict, auth: tuple[str, str]) -> list[requests.Response]:
    """POST the same form from RACERS threads released at the same instant."""
    barrier = threading.Barrier(RACERS)
    responses: list = [None] * RACERS

    def run(index: int) -> None:
        with requests.Session() as http:
            barrier.wait()
            responses[index] = http.post(url, data=data, auth=auth, timeout=60)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def assert_at_most_one_success(responses: list[requests.Response]) -> int:
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 400}, [(r.status_code, r.text[:200]) for r in responses]
    assert statuses.count(200) <= 1, statuses
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store"
        if response.status_code == 400:
            assert response.json()["error"] == "invalid_grant"
    return statuses.count(200)


@pytest.fixture
def server(shared_server):
    return shared_server()


@pytest.fixture
def registered(make_user, make_client, server):
    user = make_user(email="racer@example.com")
    client, secret = make_client(name="Racer", redirect_uris=[REDIRECT_URI], skip_consent=True)
    return user, client, secret


def test_concurrent_refreshes_of_one_token_yield_at_most_one_success(server, registered):
    user, client, secret = registered
    signed_in = sign_in(server, client_id=client.client_id, client_secret=secret, redirect_uri=REDIRECT_URI, email=user.email, password=PASSWORD)
    token = signed_in.tokens["refresh_token"]
    responses = race(server + "/token", {"grant_type": "refresh_token", "refresh_token": token}, (client.client_id, secret))
    assert assert_at_most_one_success(responses) == 1  # the strict default: one winner, the rest refused
    # Every loser presented a spent token: reuse detection revoked the family, winner included.
    winner = next(response.json() for response in responses if response.status_code == 200)
    again = requests.post(server + "/token", data={"grant_type": "refresh_token", "refresh_token": winner["refresh_token"]}, auth=(client.client_id, secret), timeout=30)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_concurrent_redemptions_of_one_code_yield_at_most_one_success(server, registered):
    user, client, secret = registered
    verifier, challenge = pkce_pair()
    url = server + "/authorize?" + urlencode({
        "response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT_URI,
        "scope": "openid offline_access", "code_challenge": challenge, "code_challenge_method": "S256",
    })
    location = follow_to_client(requests.Session(), url, redirect_uri=REDIRECT_URI, email=user.email, password=PASSWORD)
    code = parse_qs(urlsplit(location).query)["code"][0]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    assert assert_at_most_one_success(race(server + "/token", data, (client.client_id, secret))) == 1
