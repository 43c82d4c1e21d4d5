"""JSON or HTML errors are decided by marks on the views (idp/web/errors.py), not by path strings."""

from __future__ import annotations

from flask import Blueprint, abort

from idp.web.errors import json_errors


def test_marked_endpoints_answer_errors_in_json(client):
    for method, path in (("post", "/token"), ("get", "/token"), ("post", "/revoke"), ("get", "/introspect"), ("put", "/userinfo"),
                         ("post", "/.well-known/openid-configuration"), ("post", "/.well-known/jwks.json")):
        response = getattr(client, method)(path)
        assert response.status_code in (400, 401, 405) and response.is_json, (method, path, response.status_code)
        assert response.get_json()["error"], (method, path)


def test_pages_and_unknown_paths_answer_html_unless_json_is_asked_for(client):
    for path in ("/login?rid=x", "/no-such-page", "/.well-known/no-such-document"):
        response = client.put(path) if path.startswith("/login") else client.get(path)
        assert response.mimetype == "text/html", path
    assert client.get("/no-such-page", headers={"Accept": "application/json"}).is_json


def test_a_view_or_blueprint_marks_itself(app):
    bp = json_errors(Blueprint("marked_for_test", __name__))
    bp.add_url_rule("/test-only/bp", "bp_view", lambda: abort(409))
    app.register_blueprint(bp)

    @app.get("/test-only/view")
    @json_errors
    def marked_view():
        abort(409)

    app.add_url_rule("/test-only/page", "unmarked_view", lambda: abort(409))
    http = app.test_client()
    assert http.get("/test-only/bp").get_json()["error"] == "conflict"
    assert http.get("/test-only/view").get_json()["error"] == "conflict"
    assert http.get("/test-only/page").mimetype == "text/html"
