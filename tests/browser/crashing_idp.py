"""`idp` with one test-only route that fails, to see the 500 page: `python -m tests.browser.crashing_idp serve ...`.

The product has no way to fail on purpose; this wrapper adds `/test-only/server-error` to every app
the CLI builds, so a real `idp serve` renders its real 500 page. Nothing here is imported by the product.
"""

from __future__ import annotations

import idp.commands
import idp.processes

FAILING_PATH = "/test-only/server-error"
_create_app = idp.processes.create_app


def create_app(*args, **kwargs):
    """The real app, plus a GET route that raises (an unexpected error, as a bug would)."""
    app = _create_app(*args, **kwargs)

    def server_error():
        raise RuntimeError("forced by tests/browser/crashing_idp.py")

    app.add_url_rule(FAILING_PATH, "test_only_server_error", server_error)
    return app


idp.processes.create_app = create_app  # `serve` builds its app there

if __name__ == "__main__":
    idp.commands.main()
