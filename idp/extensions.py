"""Flask extensions shared by every part of the app, created unbound: `create_app` binds them.

Anyone may import this module (it imports nothing of the app's features), so a blueprint can
exempt itself from CSRF or the admin UI can configure flask-login without importing the app
factory. The database handle stays in `idp.db`, beside the declarative base it belongs to.
"""

from __future__ import annotations

from flask_login import LoginManager

from idp.csrf import OriginCheckingCSRF

csrf = OriginCheckingCSRF()

login_manager = LoginManager()
# The admin session is a server-side row already bound at sign-in: flask-login's own
# "session protection" (a hash of IP and User-Agent in the cookie) would add nothing.
login_manager.session_protection = None
