"""Signing keys: each algorithm's timeline (next, active, retired, revoked), rotate now, revoke."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for

from admin_ui.blueprint import bp
from admin_ui.auth import recent_auth_required
from admin_ui.forms import ConfirmForm, RotateForm
from admin_ui.queries import keys_by_algorithm
from admin_ui.views.common import actor
from idp.errors import ValidationError
from idp.keyring.models import KeyState, SigningKey
from idp.keyring.rotation import RotationConflict, policy, revoke_key, rotate_now
from idp.keyring.service import ALGORITHMS, list_keys
from idp.clock import utcnow
from idp.db import db


@bp.get("/keys")
def keys():
    """The keyring, per algorithm, newest first."""
    rules = policy()
    return render_template("admin/keys/list.html", groups=keys_by_algorithm(list_keys()), form=ConfirmForm(),
                           jwks_max_age=current_app.config["JWKS_MAX_AGE"], rules=rules, now=utcnow())


def rotate_form() -> RotateForm:
    form = RotateForm()
    form.alg.choices = {"": "Every algorithm", **{alg: alg for alg in ALGORITHMS}}
    return form


@bp.get("/keys/rotate")
@recent_auth_required
def keys_rotate_page():
    """Confirm a rotation now (recent password required)."""
    return render_template("admin/keys/rotate.html", form=rotate_form(), rules=policy())


@bp.post("/keys/rotate")
@recent_auth_required
def keys_rotate():
    """Rotate now (recent password required): each next key starts signing, the active one retires."""
    form = rotate_form()
    if form.validate_on_submit():
        try:
            promoted = rotate_now(actor=actor(), alg=form.alg.data or None, force=form.force.data)
        except (ValidationError, RotationConflict) as error:
            form.form_errors.append(str(error))
        else:
            flash("Rotated: " + ", ".join(f"{key.alg} now signs with {key.kid[:12]}…" for key in promoted)
                  + ". The previous keys stay published until the tokens they signed have expired.", "success")
            return redirect(url_for("admin.keys"), 303)
    return render_template("admin/keys/rotate.html", form=form, rules=policy()), 400


def revocable_or_404(kid: str) -> SigningKey:
    """The key named `kid` unless it is unknown or already revoked (404)."""
    key = db.session.scalar(db.select(SigningKey).where(SigningKey.kid == kid)) if len(kid) <= 64 else None
    if key is None or key.state is KeyState.REVOKED:
        abort(404)
    return key


@bp.get("/keys/<kid>/revoke")
@recent_auth_required
def key_revoke_page(kid: str):
    """Confirm revoking a (compromised) key, saying what breaks (recent password required)."""
    return render_template("admin/keys/revoke.html", form=ConfirmForm(), key=revocable_or_404(kid))


@bp.post("/keys/<kid>/revoke")
@recent_auth_required
def key_revoke(kid: str):
    """Revoke a (compromised) key (recent password required)."""
    key = revocable_or_404(kid)
    try:
        revoke_key(kid, actor=actor())
    except (ValidationError, RotationConflict) as error:
        # A raced change (another admin or the scheduled rotation) rolled back: say so and let them retry.
        flash(str(error).capitalize() + ".", "error")
    else:
        flash(f"Revoked {key.alg} key {kid}; it is gone from the JWKS.", "success")
    return redirect(url_for("admin.keys"), 303)
