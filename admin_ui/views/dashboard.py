"""The dashboard: counts, keyring status, last job runs, recent security events."""

from __future__ import annotations

from flask import render_template

from admin_ui.blueprint import bp
from admin_ui.queries import dashboard_counts, keys_by_algorithm, recent_security_events
from idp.jobs.service import last_runs
from idp.mfa import factors
from idp.keyring.models import KeyState
from idp.keyring.service import ALGORITHMS, list_keys


def keyring_status() -> list[dict]:
    """Per algorithm: the active and next keys and anything an admin should act on."""
    grouped = keys_by_algorithm(list_keys())
    status = []
    for alg in sorted(set(ALGORITHMS) | set(grouped)):
        keys = grouped.get(alg, [])
        active = next((key for key in keys if key.state is KeyState.ACTIVE), None)
        upcoming = next((key for key in keys if key.state is KeyState.NEXT), None)
        problems = []
        if active is None:
            problems.append("no active key: tokens cannot be signed with " + alg)
        if upcoming is None:
            problems.append("no next key published: the next rotation has nothing to promote")
        status.append({
            "alg": alg, "active": active, "next": upcoming,
            "retired": sum(1 for key in keys if key.state is KeyState.RETIRED), "problems": problems,
        })
    return status


@bp.get("/")
def dashboard():
    """Overview of the IdP."""
    return render_template(
        "admin/dashboard.html",
        counts=dashboard_counts(),
        mfa=factors.counts(),
        keyring=keyring_status(),
        runs=last_runs(),
        events=recent_security_events(),
    )
