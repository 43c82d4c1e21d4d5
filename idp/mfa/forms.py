"""Flask-WTF forms of the second-factor pages (each carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired, Length

from idp.users.service import MAX_PASSWORD_LENGTH


class CodeForm(FlaskForm):
    """A six-digit authenticator code or a recovery code."""

    code = StringField("Code", validators=[InputRequired(), Length(max=32)])


class ConfirmForm(FlaskForm):
    """Re-enter the password before removing or resetting a factor."""

    password = PasswordField("Password", validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)])


class PasskeyForm(FlaskForm):
    """A WebAuthn response (JSON, as the browser produced it) and, when registering, a name."""

    credential = HiddenField(validators=[InputRequired(), Length(max=16384)])
    name = StringField("Name", validators=[Length(max=64)])
