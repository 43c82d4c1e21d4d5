"""The per-process client cache: lookups without a query, this process's writes seen at once,
another process's within CLIENT_CACHE_SECONDS, and never a value that was not committed."""

import base64

import pytest
from sqlalchemy import event, update

from idp.clients import service
from idp.clients.service import CLIENT_CACHE_SECONDS, ClientCache, delete_client, get_client, rotate_client_secret, update_client
from idp.db import db
from idp.models import Client


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app):
    clock = Clock()
    app.extensions["idp.client_cache"] = ClientCache(clock=clock)
    return clock


@pytest.fixture
def statements(app):
    seen = []
    with app.app_context():
        engine = db.engine

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def lookup(app, client_id, **kwargs):
    with app.app_context():
        found = get_client(client_id, **kwargs)
        return None if found is None else (found.name, found.secret_digest, list(found.redirect_uris))


def elsewhere(app, client_id, **values):
    """A change another process commits: a statement this process's ORM never flushes."""
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == client_id).values(**values))
        db.session.commit()


def test_a_cached_lookup_runs_no_query(app, make_client, clock, statements):
    client, _ = make_client("Cached")
    assert lookup(app, client.client_id)[0] == "Cached"
    before = len(statements)
    for _ in range(3):
        assert lookup(app, client.client_id)[0] == "Cached"
    assert len(statements) == before
    assert lookup(app, client.client_id, fresh=True)[0] == "Cached" and len(statements) == before + 1


def test_a_change_elsewhere_is_seen_within_the_bound(app, make_client, clock):
    client, _ = make_client("Before")
    lookup(app, client.client_id)
    elsewhere(app, client.client_id, name="After")
    clock.now += CLIENT_CACHE_SECONDS - 0.5
    assert lookup(app, client.client_id)[0] == "Before"  # the documented bound, no longer
    clock.now += 0.5
    assert lookup(app, client.client_id)[0] == "After"


def test_this_processes_changes_are_seen_at_once(app, make_client, clock):
    client, secret = make_client("Mine")
    assert lookup(app, client.client_id)[0] == "Mine"
    with app.app_context():
        update_client(get_client(client.client_id, fresh=True), actor="test", redirect_uris=["https://rp.example.com/cb"])
        db.session.commit()
    assert lookup(app, client.client_id)[2] == ["https://rp.example.com/cb"]
    with app.app_context():
        rotate_client_secret(get_client(client.client_id, fresh=True))
    assert lookup(app, client.client_id)[1] != client.secret_digest
    with app.app_context():
        delete_client(get_client(client.client_id, fresh=True), actor="test")
        db.session.commit()
    assert lookup(app, client.client_id) is None


def test_an_uncommitted_change_is_never_cached(app, make_client, clock):
    client, _ = make_client("Committed")
    with app.app_context():
        row = get_client(client.client_id)
        row.name = "Rolled back"
        db.session.flush()
        assert get_client(client.client_id).name == "Rolled back"  # this transaction's own view
        db.session.rollback()
    assert lookup(app, client.client_id)[0] == "Committed"


def test_an_unknown_client_is_not_cached(app, make_client, clock):
    assert lookup(app, "not-yet") is None
    client, _ = make_client("New")
    assert lookup(app, client.client_id)[0] == "New"


def test_the_token_endpoint_refuses_a_deleted_client_at_once(app, client, make_client):
    machine, secret = make_client("Machine", grant_types=["client_credentials"], redirect_uris=[])
    auth = {"Authorization": "Basic " + base64.b64encode(f"{machine.client_id}:{secret}".encode()).decode()}
    assert client.post("/token", data={"grant_type": "client_credentials"}, headers=auth).status_code == 200
    with app.app_context():
        delete_client(get_client(machine.client_id, fresh=True), actor="test")
        db.session.commit()
    answer = client.post("/token", data={"grant_type": "client_credentials"}, headers=auth)
    assert answer.status_code == 401 and answer.get_json()["error"] == "invalid_client"


def test_the_cache_stays_bounded(app, clock, monkeypatch):
    monkeypatch.setattr(service, "CLIENT_CACHE_ENTRIES", 2)
    cache = app.extensions["idp.client_cache"]
    for name in ("a", "b", "c"):
        cache.put(name, {"name": name}, cache.generation, clock())
    assert cache.get("c") == {"name": "c"} and cache.get("a") is None
