"""Clients: list, register, edit, rotate the secret (shown once) and delete."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for

from admin_ui.blueprint import bp
from admin_ui.auth import recent_auth_required
from admin_ui.forms import ClientForm, ConfirmForm, lines
from admin_ui.queries import clients_page, recent_events_for
from admin_ui.views.common import actor, cursor_args
from idp.clients.models import Client
from idp.clients.service import create_client, delete_client, get_client, rotate_client_secret, update_client
from idp.db import db
from idp.errors import ValidationError

# Which form field shows a service refusal about each setting.
SERVICE_FIELDS = {"redirect_uri": "redirect_uris", "post_logout_redirect_uri": "post_logout_redirect_uris", "scope": "scopes"}


def client_or_404(client_id: str) -> Client:
    return get_client(client_id, fresh=True) or abort(404)  # edited here: never a cached view


def settings_from(form: ClientForm, *, public: bool) -> dict:
    """The service's keyword arguments from the form."""
    return dict(
        name=form.name.data,
        redirect_uris=lines(form.redirect_uris.data),
        post_logout_redirect_uris=lines(form.post_logout_redirect_uris.data),
        grant_types=form.grant_types.data,
        scope=" ".join(form.scopes.data),
        token_endpoint_auth_method="none" if public else form.token_endpoint_auth_method.data,
        require_pkce=True if public else form.require_pkce.data,
        skip_consent=form.skip_consent.data,
        backchannel_logout_uri=(form.backchannel_logout_uri.data or "").strip() or None,
        id_token_signed_response_alg=form.id_token_signed_response_alg.data,
        id_token_claims="minimal" if form.minimal_id_token.data else "standard",
    )


def show_error(form: ClientForm, error: ValidationError) -> None:
    field = getattr(form, SERVICE_FIELDS.get(error.field or "", error.field or ""), None)
    if field is not None and error.field:
        field.errors = [*field.errors, str(error)]
    else:
        form.form_errors.append(str(error))


def confirm_page(client: Client, *, title: str, message: str, button: str, fields: dict | None = None):
    """The confirmation page of a client action (GET, renders only); the POST to the same URL (with `fields`) does it."""
    return render_template("admin/confirm.html", form=ConfirmForm(), title=title, message=message, button=button,
                           fields=fields, danger=True, cancel=url_for("admin.client_detail", client_id=client.client_id))


def require_a_grant(form: ClientForm) -> bool:
    if not form.grant_types.data:
        form.grant_types.errors = [*form.grant_types.errors, "choose at least one grant type"]
        return False
    return True


@bp.get("/clients")
def clients():
    """Registered clients, newest first."""
    return render_template("admin/clients/list.html", page=clients_page(**cursor_args()))


@bp.get("/clients/new")
def client_new_page():
    """The form to register a client."""
    return render_template("admin/clients/form.html", form=ClientForm(), client=None)


@bp.post("/clients/new")
def client_new():
    """Register a client; a confidential client's secret is shown on the next page, once."""
    form = ClientForm()
    if form.validate_on_submit() and require_a_grant(form):
        public = form.client_type.data == "public"
        try:
            client, secret = create_client(public=public, actor=actor(), **settings_from(form, public=public))
        except ValidationError as error:
            db.session.rollback()  # the 400 would too; now, so the form shows stored values, not half-changed ones
            show_error(form, error)
        else:
            flash(f"Registered {client.name}.", "success")
            if secret is None:
                return redirect(url_for("admin.client_detail", client_id=client.client_id), 303)
            # Rendered, not redirected: the secret is never stored anywhere, not even in the session.
            return render_template("admin/clients/secret.html", client=client, secret=secret)
    return render_template("admin/clients/form.html", form=form, client=None), 400


@bp.get("/clients/<client_id>")
def client_detail(client_id: str):
    """One client's settings and recent events."""
    client = client_or_404(client_id)
    issuer = current_app.config["ISSUER"]
    return render_template("admin/clients/detail.html", client=client, events=recent_events_for(f"client:{client.client_id}"),
                           issuer=issuer, discovery_url=issuer + "/.well-known/openid-configuration")


@bp.get("/clients/<client_id>/edit")
def client_edit_page(client_id: str):
    """The form to change a client's settings, filled with the current ones."""
    client = client_or_404(client_id)
    form = ClientForm(data={
        "name": client.name,
        "client_type": "public" if client.is_public else "confidential",
        "redirect_uris": "\n".join(client.redirect_uris),
        "post_logout_redirect_uris": "\n".join(client.post_logout_redirect_uris),
        "grant_types": client.grant_types,
        "scopes": client.scopes,
        "token_endpoint_auth_method": client.token_endpoint_auth_method if not client.is_public else "client_secret_basic",
        "require_pkce": client.require_pkce,
        "skip_consent": client.skip_consent,
        "backchannel_logout_uri": client.backchannel_logout_uri or "",
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "minimal_id_token": client.id_token_claims == "minimal",
    })
    return render_template("admin/clients/form.html", form=form, client=client)


@bp.post("/clients/<client_id>/edit")
def client_edit(client_id: str):
    """Change a client's settings (its type stays)."""
    client = client_or_404(client_id)
    form = ClientForm()
    if form.validate_on_submit() and require_a_grant(form):
        try:
            changed = update_client(client, actor=actor(), **settings_from(form, public=client.is_public))
        except ValidationError as error:
            db.session.rollback()  # the 400 would too; now, so the form shows stored values, not half-changed ones
            show_error(form, error)
        else:
            flash(f"Saved {client.name}." if changed else "Nothing changed.", "success")
            return redirect(url_for("admin.client_detail", client_id=client.client_id), 303)
    return render_template("admin/clients/form.html", form=form, client=client), 400


def confidential_or_404(client_id: str) -> Client:
    client = client_or_404(client_id)
    if client.is_public:
        abort(404)
    return client


@bp.get("/clients/<client_id>/rotate-secret")
@recent_auth_required
def client_rotate_secret_page(client_id: str):
    """Confirm rotating a confidential client's secret (recent password required)."""
    client = confidential_or_404(client_id)
    return confirm_page(
        client, title=f"Rotate the secret of {client.name}?", button="Rotate secret",
        message="The current secret stops working at once: the client fails to get tokens until it is given the new "
                "secret, which is shown on the next page only once. Tokens already issued keep working.",
    )


@bp.post("/clients/<client_id>/rotate-secret")
@recent_auth_required
def client_rotate_secret(client_id: str):
    """Replace a confidential client's secret (recent password required); the new one is shown once."""
    client = confidential_or_404(client_id)
    secret = rotate_client_secret(client, actor=actor())
    flash(f"Rotated the secret of {client.name}.", "success")
    return render_template("admin/clients/secret.html", client=client, secret=secret)


@bp.get("/clients/<client_id>/delete")
def client_delete_page(client_id: str):
    """Confirm deleting a client."""
    client = client_or_404(client_id)
    return confirm_page(
        client, title=f"Delete {client.name}?", button="Delete client",
        message="Its users can no longer sign in to it, every refresh token it holds stops working and remembered "
                "consents are forgotten. Access tokens already issued stay valid until they expire. This cannot be undone.",
    )


@bp.post("/clients/<client_id>/delete")
def client_delete(client_id: str):
    """Delete a client with its consents, codes and refresh tokens."""
    client = client_or_404(client_id)
    name = client.name
    delete_client(client, actor=actor())
    flash(f"Deleted {name}.", "success")
    return redirect(url_for("admin.clients"), 303)
