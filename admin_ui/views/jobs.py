"""Background jobs: the last run of each, with counts and outcome."""

from __future__ import annotations

from flask import render_template

from admin_ui import bp
from admin_ui.queries import last_job_runs


@bp.get("/jobs")
def jobs():
    """Last run of each job."""
    return render_template("admin/jobs/list.html", runs=last_job_runs())
