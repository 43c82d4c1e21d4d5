"""Clients pages: list, register (secret shown once), edit with validation, rotate secret, delete."""

from __future__ import annotations

import re

from idp.clients.service import verify_client_secret
from idp.db import db
from idp.models import Client, Consent, RefreshFamily, RefreshToken
from tests.admin_ui.conftest import audit_actions, make_grant, make_session

CONFIDENTIAL = {
    "name": "Billing",
    "client_type": "confidential",
    "redirect_uris": "https://billing.example.com/callback\r\nhttp://127.0.0.1:8080/cb",
    "post_logout_redirect_uris": "https://billing.example.com/bye",
    "grant_types": ["authorization_code", "refresh_token"],
    "scopes": ["openid", "email"],
    "token_endpoint_auth_method": "client_secret_post",
    "require_pkce": "y",
    "skip_consent": "y",
    "backchannel_logout_uri": "https://billing.example.com/logout",
    "id_token_signed_response_alg": "ES256",
}


def only_client(app) -> Client:
    with app.app_context():
        client = db.session.scalar(db.select(Client))
        db.session.expunge(client)
        return client


def test_register_a_confidential_client_and_see_its_secret_once(app, signed_in):
    response = signed_in.post("/admin/clients/new", CONFIDENTIAL)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    secret = re.search(r'id="client-secret" class="secret">([^<]+)<', html).group(1)
    assert secret.startswith("idp_cs_") and "shown only this once" in html
    assert response.headers["Cache-Control"] == "no-store"
    client = only_client(app)
    assert verify_client_secret(client, secret)
    assert client.secret_digest != secret
    assert (client.name, client.redirect_uris, client.post_logout_redirect_uris) == (
        "Billing", ["https://billing.example.com/callback", "http://127.0.0.1:8080/cb"], ["https://billing.example.com/bye"])
    assert (client.scope, client.token_endpoint_auth_method, client.skip_consent, client.id_token_signed_response_alg) == (
        "openid email", "client_secret_post", True, "ES256")
    assert client.backchannel_logout_uri == "https://billing.example.com/logout"
    for url in (f"/admin/clients/{client.client_id}", "/admin/clients", f"/admin/clients/{client.client_id}/edit"):
        assert secret not in signed_in.get(url).get_data(as_text=True)
    assert "client.created" in audit_actions(app)


def test_register_a_public_client(app, signed_in):
    response = signed_in.post("/admin/clients/new", {**CONFIDENTIAL, "client_type": "public", "require_pkce": ""})
    client = only_client(app)
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/clients/{client.client_id}"
    assert client.is_public and client.secret_digest is None and client.require_pkce
    assert client.token_endpoint_auth_method == "none"


def test_bad_client_input_rerenders_with_field_errors(app, signed_in):
    cases = [
        ({"redirect_uris": "http://evil.example.com/cb\nhttps://ok.example.com/cb#frag"},
         ["uses http on a non-loopback host", "must not contain a fragment"]),
        ({"redirect_uris": "not a uri"}, ["must be absolute"]),
        ({"post_logout_redirect_uris": "javascript:alert(1)"}, ["reverse-domain scheme"]),
        ({"backchannel_logout_uri": "http://rp.example.com/logout"}, ["use https"]),
        ({"redirect_uris": ""}, ["needs at least one redirect URI"]),
        ({"grant_types": []}, ["choose at least one grant type"]),
        ({"grant_types": ["password"]}, ["is not a valid choice"]),
        ({"client_type": "public", "grant_types": ["client_credentials"]}, ["a public client cannot use client_credentials"]),
        ({"name": ""}, ["This field is required."]),
        ({"scopes": ["admin"]}, ["is not a valid choice"]),
    ]
    for change, messages in cases:
        response = signed_in.post("/admin/clients/new", {**CONFIDENTIAL, **change})
        html = response.get_data(as_text=True)
        assert response.status_code == 400, change
        for message in messages:
            assert message in html, (change, message)
        assert "<script" not in html.split("</head>")[1]
    with app.app_context():
        assert db.session.scalar(db.select(Client)) is None


def test_edit_a_client(app, signed_in, make_client):
    registered, secret = make_client(name="Old name")
    form = signed_in.get(f"/admin/clients/{registered.client_id}/edit").get_data(as_text=True)
    assert "http://127.0.0.1:9999/callback" in form and 'value="Old name"' in form
    bad = signed_in.post(f"/admin/clients/{registered.client_id}/edit", {**CONFIDENTIAL, "redirect_uris": "ftp://x"})
    assert bad.status_code == 400 and only_client(app).name == "Old name"
    response = signed_in.post(f"/admin/clients/{registered.client_id}/edit", {**CONFIDENTIAL, "name": "New name"})
    assert response.status_code == 303
    client = only_client(app)
    assert client.name == "New name" and client.redirect_uris[0] == "https://billing.example.com/callback"
    assert verify_client_secret(client, secret)  # editing keeps the secret and the type
    assert not client.is_public
    assert "client.updated" in audit_actions(app)


def test_rotate_secret_needs_confirmation_and_shows_the_new_secret_once(app, signed_in, make_client):
    registered, old_secret = make_client()
    url = f"/admin/clients/{registered.client_id}/rotate-secret"
    confirm = signed_in.get(url)
    assert confirm.status_code == 200 and "stops working at once" in confirm.get_data(as_text=True)
    assert verify_client_secret(only_client(app), old_secret)
    response = signed_in.post(url)
    new_secret = re.search(r'id="client-secret" class="secret">([^<]+)<', response.get_data(as_text=True)).group(1)
    client = only_client(app)
    assert verify_client_secret(client, new_secret) and not verify_client_secret(client, old_secret)
    assert "client.secret_rotated" in audit_actions(app)


def test_a_public_client_has_no_secret_to_rotate(signed_in, make_client):
    registered, _ = make_client(public=True)
    assert signed_in.get(f"/admin/clients/{registered.client_id}/rotate-secret").status_code == 404


def test_delete_a_client_with_its_grants(app, signed_in, make_client, make_user):
    registered, _ = make_client(name="Doomed")
    user = make_user()
    _, sid = make_session(app, user.id)
    make_grant(app, user.id, registered.id, sid=sid)
    confirm = signed_in.get(f"/admin/clients/{registered.client_id}/delete")
    assert "cannot be undone" in confirm.get_data(as_text=True)
    response = signed_in.post(f"/admin/clients/{registered.client_id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/clients"
    assert "Deleted Doomed." in signed_in.get("/admin/clients").get_data(as_text=True)
    with app.app_context():
        for model in (Client, Consent, RefreshFamily, RefreshToken):
            assert db.session.scalar(db.select(model)) is None, model
    assert "client.deleted" in audit_actions(app)


def test_tampered_client_ids_are_404(signed_in):
    for url in ["/admin/clients/nope", "/admin/clients/nope/edit", "/admin/clients/nope/delete", "/admin/clients/" + "x" * 100]:
        assert signed_in.get(url).status_code == 404, url
    for url in ["/admin/clients/nope/edit", "/admin/clients/nope/delete", "/admin/clients/nope/rotate-secret"]:
        assert signed_in.post(url, page="/admin/clients/new").status_code == 404, url


def test_client_list_and_empty_state(app, signed_in, make_client):
    assert "Register your first application" in signed_in.get("/admin/clients").get_data(as_text=True)
    app.config["ADMIN_PAGE_SIZE"] = 2
    for n in range(3):
        make_client(name=f"App {n}")
    first = signed_in.get("/admin/clients").get_data(as_text=True)
    assert re.findall(r">(App \d)</a>", first) == ["App 2", "App 1"]
    after = re.search(r'href="(/admin/clients\?after=[^"]+)"', first).group(1)
    assert re.findall(r">(App \d)</a>", signed_in.get(after).get_data(as_text=True)) == ["App 0"]


def test_the_minimal_id_token_switch(app, signed_in):
    response = signed_in.post("/admin/clients/new", {**CONFIDENTIAL, "minimal_id_token": "y"})
    assert response.status_code == 200
    client = only_client(app)
    assert client.id_token_claims == "minimal"
    detail = signed_in.get(f"/admin/clients/{client.client_id}").get_data(as_text=True)
    assert "minimal (sub and sign-in facts" in detail
    form = signed_in.get(f"/admin/clients/{client.client_id}/edit").get_data(as_text=True)
    box = re.search(r'<input[^>]*name="minimal_id_token"[^>]*>', form).group(0)
    assert " checked" in box
    response = signed_in.post(f"/admin/clients/{client.client_id}/edit", CONFIDENTIAL)  # box unticked
    assert response.status_code == 303 and only_client(app).id_token_claims == "standard"
    assert "Keep the ID token minimal" in signed_in.get(f"/admin/clients/{client.client_id}/edit").get_data(as_text=True)
