"""Every state-changing admin request needs its CSRF token: without or with a wrong one, 400 and nothing changes."""

from __future__ import annotations

import pytest

from tests.admin_ui.conftest import PASSWORD, make_grant, make_session, snapshot


@pytest.fixture
def targets(app, admin, make_user, make_client):
    """Objects for every action to aim at, and the (url, data) of every admin POST."""
    user = make_user(email="target@example.com", is_admin=False)
    other_admin = make_user(email="other-admin@example.com", is_admin=True)
    registered, _ = make_client()
    _, sid = make_session(app, user.id)
    make_grant(app, user.id, registered.id, sid=sid)
    return [
        ("/admin/login", {"email": admin.email, "password": PASSWORD}),
        ("/admin/logout", {}),
        ("/admin/reauth", {"password": PASSWORD}),
        ("/admin/users/new", {"email": "new@example.com", "password": "a-long-password", "password_confirm": "a-long-password"}),
        (f"/admin/users/{user.id}/edit", {"email": "renamed@example.com", "name": "Renamed"}),
        (f"/admin/users/{user.id}/password", {"password": "another-password", "password_confirm": "another-password"}),
        (f"/admin/users/{user.id}/disable", {}),
        (f"/admin/users/{user.id}/grant-admin", {}),
        (f"/admin/users/{other_admin.id}/revoke-admin", {}),
        (f"/admin/users/{user.id}/sign-out", {}),
        (f"/admin/users/{user.id}/delete", {}),
        (f"/admin/users/{user.id}/grants/{registered.client_id}/revoke", {}),
        ("/admin/clients/new", {"name": "Evil", "client_type": "public", "redirect_uris": "https://evil.example/cb", "grant_types": "authorization_code"}),
        (f"/admin/clients/{registered.client_id}/edit", {"name": "Renamed", "redirect_uris": "https://evil.example/cb", "grant_types": "authorization_code"}),
        (f"/admin/clients/{registered.client_id}/rotate-secret", {}),
        (f"/admin/clients/{registered.client_id}/delete", {}),
        ("/admin/sessions/revoke", {"only": sid}),
        ("/admin/sessions/revoke", {"sid": [sid], "confirmed": "yes"}),
    ]


@pytest.mark.parametrize("token", [None, "wrong", "from-another-session"])
def test_admin_posts_without_a_valid_csrf_token_are_refused(app, signed_in, targets, token):
    if token == "from-another-session":
        from tests.admin_ui.conftest import AdminBrowser

        token = AdminBrowser(app.test_client()).token("/admin/login")
    before = snapshot(app)
    for url, data in targets:
        payload = dict(data)
        if token is not None:
            payload["csrf_token"] = token
        response = signed_in.client.post(url, data=payload)
        assert response.status_code == 400, url
        assert "CSRF" in response.get_data(as_text=True), url
    assert snapshot(app) == before
    assert signed_in.get("/admin/").status_code == 200  # and the admin is still signed in
