"""Flask-WTF forms of the account page (each carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import EqualTo, InputRequired, Length

from idp.users.service import MAX_PASSWORD_LENGTH


class ActionForm(FlaskForm):
    """A bare form for buttons that only need CSRF protection (sign out, revoke)."""


class PasswordForm(FlaskForm):
    """Change password: the current one, and the new one twice."""

    current_password = PasswordField("Current password", validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    new_password = PasswordField("New password", validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    confirm_password = PasswordField("Repeat the new password", validators=[InputRequired(), EqualTo("new_password", "The two new passwords differ.")])
