"""`idp` with the test-only job clock override on: `python -m tests.keys.job_clock worker ...`.

JOB_CLOCK_OVERRIDE is a config key, not a setting: no IDP_* variable turns it on, so processes the
rotation tests start come through this module, which adds it to every app the command builds.
Nothing here is imported by the product.
"""

from __future__ import annotations

import sys

from idp import config


def enable_job_clock_override() -> None:
    """Every app built from now on in this process honours a task's `now` argument."""
    load = config.load
    if getattr(load, "job_clock_override", False):
        return

    def load_with_override(overrides=None, environ=None):
        return load({"JOB_CLOCK_OVERRIDE": True, **(overrides or {})}, environ)

    load_with_override.job_clock_override = True
    config.load = load_with_override


def main() -> None:
    """Run the `idp` command with the override on."""
    from idp.commands import main as idp_main

    enable_job_clock_override()
    sys.argv[0] = "idp"
    idp_main()


if __name__ == "__main__":
    main()
