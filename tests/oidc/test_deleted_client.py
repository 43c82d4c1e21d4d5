"""A client another replica deleted while this process still caches it (for up to CLIENT_CACHE_SECONDS):
a token request gets invalid_client (RFC 6749 5.2), as for any unknown client, never a 500, and
writes nothing."""

import sqlite3

from sqlalchemy import delete, func, select, text

from idp.db import db
from idp.models import AuditEvent, AuthorizationCode, Client, RefreshFamily
from tests.oidc.test_token_endpoint import assert_oauth_error


def delete_behind_the_cache(app, client_id: str, *, cascade: bool = True) -> None:
    """Delete the client's row on a connection of its own, as another replica would: this process's
    ORM never flushes it, so its client cache keeps the client.

    `cascade=False` deletes it with foreign keys unenforced, leaving its codes and families: the
    moment of a race where the deletion lands after this request read them and before it writes.
    """
    with app.app_context():
        engine = db.engine
    statement = delete(Client.__table__).where(Client.__table__.c.client_id == client_id)
    if cascade:
        with engine.begin() as connection:
            connection.execute(statement)
    elif engine.dialect.name == "sqlite":
        connection = sqlite3.connect(engine.url.database)  # foreign keys are off unless asked for
        connection.execute("DELETE FROM clients WHERE client_id = ?", (client_id,))
        connection.commit()
        connection.close()
    else:
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL session_replication_role = replica"))  # no FK triggers
            connection.execute(statement)


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def assert_unknown_client(response) -> None:
    assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_redeeming_a_code_of_a_client_deleted_elsewhere_is_invalid_client(app, oidc, rp, user):
    authorization = oidc.sign_in_and_authorize(rp, user.email, scope="openid offline_access")  # the client is cached now
    delete_behind_the_cache(app, rp.client_id)
    events = count(app, AuditEvent)
    assert_unknown_client(oidc.redeem(rp, authorization))
    assert count(app, RefreshFamily) == 0 and count(app, AuditEvent) == events


def test_refreshing_for_a_client_deleted_elsewhere_is_invalid_client(app, oidc, rp, user):
    tokens = oidc.tokens_for(rp, user.email, scope="openid offline_access")
    delete_behind_the_cache(app, rp.client_id)
    events = count(app, AuditEvent)
    assert_unknown_client(oidc.token(rp, grant_type="refresh_token", refresh_token=tokens["refresh_token"]))
    assert count(app, AuditEvent) == events


def test_a_deletion_landing_mid_exchange_fails_no_foreign_key_and_writes_nothing(app, oidc, rp, user):
    authorization = oidc.sign_in_and_authorize(rp, user.email, scope="openid offline_access")
    delete_behind_the_cache(app, rp.client_id, cascade=False)  # the code survives; the family's insert would fail its key
    events = count(app, AuditEvent)
    assert_unknown_client(oidc.redeem(rp, authorization))
    assert count(app, RefreshFamily) == 0 and count(app, AuditEvent) == events
    with app.app_context():
        assert db.session.scalar(select(AuthorizationCode.used_at)) is None  # the code was not spent either


def test_the_next_request_knows_the_client_is_gone_without_a_failure(app, oidc, rp, user):
    authorization = oidc.sign_in_and_authorize(rp, user.email)
    delete_behind_the_cache(app, rp.client_id)
    assert_unknown_client(oidc.redeem(rp, authorization))
    # The stale entry went with the failure: client_credentials, which writes nothing, is refused too.
    assert_unknown_client(oidc.token(rp, grant_type="client_credentials"))


def test_consenting_to_a_client_deleted_elsewhere_is_a_page_not_a_500(app, oidc, rp, user):
    response = oidc.follow(oidc.authorize(rp)[0])
    response = oidc.follow(oidc.login(response.request.full_path.rstrip("?"), user.email))
    assert b">Allow</button>" in response.data
    consent_at = response.request.full_path.rstrip("?")
    delete_behind_the_cache(app, rp.client_id)
    events = count(app, AuditEvent)
    refused = oidc.decide(consent_at)
    assert refused.status_code == 400 and "invalid_client" in refused.get_data(as_text=True)
    assert count(app, AuditEvent) == events


def test_authorizing_a_first_party_client_deleted_elsewhere_is_a_page_not_a_500(app, oidc, register, user):
    first_party = register(skip_consent=True)
    oidc.sign_in_and_authorize(first_party, user.email)  # signed in; the client is cached
    delete_behind_the_cache(app, first_party.client_id)
    response, _, _ = oidc.authorize(first_party)
    assert response.status_code == 400 and "invalid_client" in response.get_data(as_text=True)
    assert "Location" not in response.headers  # RFC 6749 4.1.2.1: never redirected
    assert count(app, AuthorizationCode) == 0  # the first code went with the client; no new one
