"""`idp users ...` and `idp clients ...`: thin wrappers over the same service functions the web app
and admin UI use.

Errors are one line on stderr with exit status 2 (idp/commands.py); nothing is written when input is refused.
"""

from __future__ import annotations

import json
import sys
from functools import wraps

import click
from flask import Flask

from idp import create_app
from idp.audit.actors import Actor
from idp.clients.service import create_client, list_clients, require_client, update_client
from idp.db import unit_of_work
from idp.onboarding.service import invite, send_verification
from idp.signout import disable_user, set_password, sign_out_everywhere
from idp.users.service import create_user, list_users, require_user


def with_app(require_secrets: bool = True):
    """Run the command inside an app context and one transaction (the command's edge, idp/db.py:
    committed when it returns, rolled back if it fails); the app is passed as the first argument.

    The command returns the lines it reports, printed only once the commit succeeded: a commit
    that fails (a constraint, a locked or lost database) never follows a printed success.
    """

    def decorator(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            app = create_app(require_secrets=require_secrets)
            with app.app_context(), unit_of_work():
                lines = fn(app, *args, **kwargs)
            for line in lines:
                click.echo(line)

        return wrapper

    return decorator


def _isoformat(value) -> str | None:
    return value.isoformat() if value else None


# --- users --------------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """End users and admins."""


def read_password_stdin() -> str:
    """The password from standard input: its first line, without the newline."""
    return sys.stdin.readline().rstrip("\r\n")


@users.command("create")
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from standard input.")
@click.option("--name", default=None)
@click.option("--admin", is_flag=True, help="Grant admin rights.")
@with_app()
def users_create(app: Flask, email: str, password_stdin: bool, name: str | None, admin: bool) -> list[str]:
    """Create a user."""

    user = create_user(email, read_password_stdin(), name=name, is_admin=admin, actor=Actor.CLI)
    return [json.dumps({"id": user.id, "sub": user.subject, "email": user.email, "is_admin": user.is_admin})]


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def users_list(app: Flask, as_json: bool) -> list[str]:
    """List users."""

    rows = [
        {"id": u.id, "sub": u.subject, "email": u.email, "name": u.name, "is_admin": u.is_admin,
         "disabled": u.is_disabled, "email_verified": u.email_verified, "created_at": _isoformat(u.created_at)}
        for u in list_users()
    ]
    if as_json:
        return [json.dumps(rows, indent=2)]
    lines = []
    for row in rows:
        flags = ",".join(f for f, on in (("admin", row["is_admin"]), ("disabled", row["disabled"])) if on)
        lines.append(f"{row['id']:>6}  {row['email']:<40} {flags}")
    return lines


@users.command("disable")
@click.argument("email")
@with_app()
def users_disable(app: Flask, email: str) -> list[str]:
    """Disable a user: they can no longer sign in, and every token and session they hold dies."""

    disable_user(require_user(email), actor=Actor.CLI)
    return [f"disabled {email}"]


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the new password from standard input.")
@with_app()
def users_set_password(app: Flask, email: str, password_stdin: bool) -> list[str]:
    """Set a user's password; every session and token they hold dies."""

    set_password(require_user(email), read_password_stdin(), actor=Actor.CLI)
    return [f"password set for {email}; all their sessions and tokens are revoked"]


@users.command("invite")
@click.argument("email")
@click.option("--name", default=None)
@with_app()
def users_invite(app: Flask, email: str, name: str | None) -> list[str]:
    """Invite someone by email: the account has no password until they choose one through the mailed link."""
    user = invite(email, name=name, actor=Actor.CLI)
    return [f"invited {user.email}; the invitation link is in the outbox (mailed by the worker)"]


@users.command("resend-verification")
@click.argument("email")
@with_app()
def users_resend_verification(app: Flask, email: str) -> list[str]:
    """Mail a new verification link (the pending new address, or the unverified current one)."""
    link = send_verification(require_user(email), actor=Actor.CLI)
    return [f"verification link for {link.email} queued"]


@users.command("sign-out")
@click.argument("email")
@with_app()
def users_sign_out(app: Flask, email: str) -> list[str]:
    """Sign a user out everywhere: every session, access token and refresh token (offline too)."""

    sign_out_everywhere(require_user(email), actor=Actor.CLI)
    return [f"signed {email} out everywhere"]


# --- clients ------------------------------------------------------------------------------------


@click.group()
def clients() -> None:
    """OAuth clients (relying parties)."""


@clients.command("create")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE required).")
@click.option("--grant-type", "grant_types", multiple=True, help="authorization_code, refresh_token, client_credentials.")
@click.option("--scope", default="openid profile email offline_access", show_default=True)
@click.option("--token-endpoint-auth-method", default=None, help="client_secret_basic (default), client_secret_post or none.")
@click.option("--skip-consent", is_flag=True, help="First-party client: no consent page.")
@click.option("--no-pkce", is_flag=True, help="Let a confidential client omit PKCE.")
@click.option("--backchannel-logout-uri", default=None)
@click.option("--id-token-alg", default="RS256", show_default=True, type=click.Choice(["RS256", "ES256"]))
@click.option("--id-token-claims", default="standard", show_default=True, type=click.Choice(["standard", "minimal"]),
              help="standard: the ID token carries the profile and email claims granted; minimal: only sub and sign-in facts.")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_create(app: Flask, name, redirect_uris, post_logout_redirect_uris, public, grant_types, scope,
                   token_endpoint_auth_method, skip_consent, no_pkce, backchannel_logout_uri, id_token_alg,
                   id_token_claims, as_json) -> list[str]:
    """Register a client; its secret is printed once and never stored."""

    client, secret = create_client(
        name,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris),
        public=public,
        grant_types=list(grant_types) or None,
        scope=scope,
        token_endpoint_auth_method=token_endpoint_auth_method,
        require_pkce=not no_pkce,
        skip_consent=skip_consent,
        backchannel_logout_uri=backchannel_logout_uri,
        id_token_signed_response_alg=id_token_alg,
        id_token_claims=id_token_claims,
        actor=Actor.CLI,
    )
    result = {"client_id": client.client_id, "name": client.name}
    if secret:
        result["client_secret"] = secret
    if as_json:
        return [json.dumps(result)]
    lines = [f"client_id:     {client.client_id}"]
    if secret:
        lines.append(f"client_secret: {secret}   (shown once; store it now)")
    return lines


@clients.command("update")
@click.argument("client_id")
@click.option("--name", default=None)
@click.option("--scope", default=None, help="Space-separated scopes, replacing the registered ones.")
@click.option("--id-token-claims", default=None, type=click.Choice(["standard", "minimal"]),
              help="standard: the ID token carries the profile and email claims granted; minimal: only sub and sign-in facts.")
@with_app()
def clients_update(app: Flask, client_id: str, name, scope, id_token_claims) -> list[str]:
    """Change a registered client's name, scopes or ID token claims."""
    wanted = {"name": name, "scope": scope, "id_token_claims": id_token_claims}
    changed = update_client(require_client(client_id), actor=Actor.CLI, **{k: v for k, v in wanted.items() if v is not None})
    return [f"updated {client_id}: {', '.join(changed)}" if changed else f"nothing changed for {client_id}"]


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_list(app: Flask, as_json: bool) -> list[str]:
    """List clients."""

    rows = [
        {"client_id": c.client_id, "name": c.name, "public": c.is_public, "redirect_uris": c.redirect_uris,
         "grant_types": c.grant_types, "scope": c.scope, "token_endpoint_auth_method": c.token_endpoint_auth_method}
        for c in list_clients()
    ]
    if as_json:
        return [json.dumps(rows, indent=2)]
    return [f"{row['client_id']}  {'public' if row['public'] else 'confidential':<12} {row['name']}" for row in rows]
