"""Flask-WTF forms of the recovery, verification, invitation and sign-up pages (CSRF-protected)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length, Optional

from idp.users.service import MAX_PASSWORD_LENGTH


class EmailForm(FlaskForm):
    """One email address (forgot password)."""

    email = StringField("Email", validators=[InputRequired(), Length(max=320)])


class NewPasswordForm(FlaskForm):
    """A new password, typed twice (reset, invitation)."""

    password = PasswordField("New password", validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    confirm = PasswordField("Repeat the new password", validators=[InputRequired(), EqualTo("password", "The passwords differ.")])


class ConfirmForm(FlaskForm):
    """A button and the CSRF token (confirm an email address)."""


class SignupForm(NewPasswordForm):
    """Email, optional name, and a password typed twice."""

    email = StringField("Email", validators=[InputRequired(), Length(max=320)])
    name = StringField("Name (optional)", validators=[Optional(), Length(max=200)])


class EmailChangeForm(FlaskForm):
    """The new address and the current password."""

    email = StringField("New email address", validators=[InputRequired(), Length(max=320)])
    password = PasswordField("Current password", validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)])
