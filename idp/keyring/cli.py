"""`idp keys ...`: list, rotate, revoke and rewrap signing keys (the same functions the jobs and admin UI use)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

import click

from idp import create_app
from idp.db import unit_of_work
from idp.audit.actors import Actor
from idp.errors import ValidationError
from idp.jobs.service import run_job
from idp.keyring.models import ALGORITHMS
from idp.keyring.rotation import revoke_key, rotate_now
from idp.keyring.service import describe_key, list_keys, require_key, rewrap_keys
from idp.mfa.totp import rewrap_secrets

ALGORITHM_CHOICE = click.Choice(list(ALGORITHMS))


@contextmanager
def _app_context() -> Iterator[None]:
    """The command's app context and its one transaction (the command's edge, idp/db.py)."""
    with create_app().app_context(), unit_of_work():
        yield


@click.group()
def keys() -> None:
    """Signing keys."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    """List signing keys with algorithm, state and dates (private halves are never shown)."""

    with _app_context():
        rows = [describe_key(key) for key in list_keys()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        dates = "  ".join(f"{name} {row[f'{name}_at']}" for name in ("created", "activated", "retired", "revoked") if row[f"{name}_at"])
        click.echo(f"{row['alg']:<6} {row['state']:<8} {row['kid']}  {dates}")


@keys.command("rotate")
@click.option("--now", "immediately", is_flag=True, help="Promote the published next key to active at once.")
@click.option("--alg", type=ALGORITHM_CHOICE, default=None, help="With --now: only this algorithm (default: all).")
@click.option("--force", is_flag=True, help="With --now: even if the next key is younger than the lead time.")
def keys_rotate(immediately: bool, alg: str | None, force: bool) -> None:
    """Run the scheduled rotation step now, or with --now rotate at once (old key stays published)."""

    if (alg or force) and not immediately:
        raise ValidationError("--alg and --force go with --now")
    with _app_context():  # reported once committed (after the block), never before
        if not immediately:
            run = run_job("rotate_keys")
            if run.outcome == "skipped":
                raise click.ClickException("skipped: another runner is rotating keys right now")
            lines = [json.dumps(run.counts, sort_keys=True)]
        else:
            lines = [f"{key.alg}: {key.kid} now signs; the previous key stays published until its tokens expire"
                     for key in rotate_now(actor=Actor.CLI, alg=alg, force=force)]
    for line in lines:
        click.echo(line)


@keys.command("revoke")
@click.argument("kid")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def keys_revoke(kid: str, yes: bool) -> None:
    """Withdraw a compromised key from the JWKS at once: every token it signed stops verifying."""

    with _app_context():
        key = require_key(kid)
        click.echo(
            f"WARNING: revoking {key.kid} ({key.alg}, {key.state.value}) removes it from the JWKS within seconds. "
            "Every token it signed (access tokens, ID tokens, logout hints) stops verifying here and at relying "
            "parties as soon as they refetch the JWKS; their users must sign in again."
            + (" A new key takes over signing at once." if key.state.value == "active" else ""),
            err=True,
        )
        if not yes:
            try:
                click.confirm("Revoke it?", abort=True, err=True)
            except click.Abort:
                raise ValidationError("not revoked: no confirmation (pass --yes to skip the question)") from None
        revoke_key(kid, actor=Actor.CLI)
    click.echo(f"revoked {kid}")


@keys.command("rewrap")
def keys_rewrap() -> None:
    """Re-encrypt every private key and authenticator-app key under the first (newest) key-encryption key."""

    with _app_context():
        result = rewrap_keys(actor=Actor.CLI)
        apps = rewrap_secrets(actor=Actor.CLI)
    click.echo(
        f"rewrapped {result['rewrapped']} keys under the newest key-encryption key "
        f"({result['were_under_older_key']} needed an older one) and {apps} authenticator-app keys; "
        "older key-encryption keys can now be removed"
    )


