"""Flask-WTF forms of the sign-in pages (CSRF-protected)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import AnyOf, InputRequired, Length

from idp.users.service import MAX_PASSWORD_LENGTH


class LoginForm(FlaskForm):
    """Email and password; `rid` names the authorization request waiting for the sign-in."""

    username = StringField("Email", validators=[InputRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    rid = HiddenField(validators=[Length(max=64)])
    next = HiddenField(validators=[Length(max=200)])


class ConsentForm(FlaskForm):
    """Allow or deny the authorization request `rid`."""

    decision = HiddenField(validators=[AnyOf(["allow", "deny"])])
    rid = HiddenField(validators=[InputRequired(), Length(max=64)])
