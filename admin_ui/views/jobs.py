"""Background jobs: the last run of each, with counts and outcome, and "run now"."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for

from admin_ui.blueprint import bp
from admin_ui.forms import ConfirmForm
from idp.errors import IdpError
from idp.jobs.service import JOBS, enqueue, last_runs


@bp.get("/jobs")
def jobs():
    """Every job with its last run (if any) and a "Run now" button."""
    runs = {run.job: run for run in last_runs()}
    return render_template("admin/jobs/list.html", jobs=sorted(JOBS), runs=runs, form=ConfirmForm())


@bp.post("/jobs/<name>/run")
def job_run(name: str):
    """Queue a run of the job now; the worker records it like a scheduled run."""
    if name not in JOBS:
        abort(404)
    try:
        enqueue(name)
    except IdpError as error:
        flash(f"Could not start {name}: {error}.", "error")
    else:
        flash(f"Queued a run of {name}; the worker picks it up within seconds. Reload to see its outcome.", "success")
    return redirect(url_for("admin.jobs"), 303)
