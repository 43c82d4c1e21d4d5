"""The admin UI's forms (Flask-WTF: every POST form carries a CSRF token; filter forms are GET)."""

from __future__ import annotations

from datetime import timezone

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateTimeLocalField, PasswordField, RadioField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, EqualTo, Length, Optional
from wtforms.validators import ValidationError as FieldError
from wtforms.widgets import CheckboxInput, ListWidget

from idp.clients.service import AUTH_METHODS, GRANT_TYPES, SCOPES, validate_https_url, validate_redirect_uri
from idp.errors import ValidationError
from idp.sessions.models import SessionKind
from idp.users.service import MAX_PASSWORD_LENGTH, get_user_by_email, normalize_email, validate_password


def service_rule(check):
    """A WTForms validator running a service's own check, so a rule lives in one place."""

    def validator(form, field):
        if field.data:
            try:
                check(field.data)
            except ValidationError as error:
                raise FieldError(str(error)) from None

    return validator


def each_line(check):
    """Run a service check on every line of a textarea; report every bad line, not just the first."""

    def validator(form, field):
        problems = []
        for line in lines(field.data):
            try:
                check(line)
            except ValidationError as error:
                problems.append(str(error))
        if problems:
            field.errors.extend(problems[:-1])
            raise FieldError(problems[-1])

    return validator


def lines(text: str | None) -> list[str]:
    """Non-empty, trimmed lines of a textarea."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class MultiCheckboxField(SelectMultipleField):
    """A set of checkboxes for a multiple choice."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ConfirmForm(FlaskForm):
    """A confirmation or action button: nothing but the CSRF token."""


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)], render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)], render_kw={"autocomplete": "current-password"})


class ReauthForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)],
                             render_kw={"autocomplete": "current-password", "autofocus": True})


class PasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), service_rule(validate_password)], render_kw={"autocomplete": "new-password"})
    password_confirm = PasswordField("Repeat the new password", validators=[DataRequired(), EqualTo("password", "The two passwords differ.")],
                                     render_kw={"autocomplete": "new-password"})


class UserEditForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320), service_rule(normalize_email)], render_kw={"autocomplete": "off"})
    name = StringField("Display name", validators=[Optional(), Length(max=200)], render_kw={"autocomplete": "off"})


class UserCreateForm(UserEditForm, PasswordForm):
    """A new account: email, name and a first password."""

    def validate_email(self, field):
        # Reported with the other field errors; create_user refuses a duplicate again, atomically.
        if get_user_by_email(field.data) is not None:
            raise FieldError("a user with this email already exists")


class UserInviteForm(UserEditForm):
    """An invitation: email and name; the invited user chooses the password through the mailed link."""

    validate_email = UserCreateForm.validate_email


class ClientForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    client_type = RadioField("Type", choices={"confidential": "Confidential (a server that keeps a secret)",
                                      "public": "Public (a browser or native app; no secret, PKCE required)"},
                             default="confidential")
    redirect_uris = TextAreaField("Redirect URIs", validators=[each_line(validate_redirect_uri)],
                                  description="One per line, matched exactly. https, http on loopback, or a reverse-domain scheme.")
    post_logout_redirect_uris = TextAreaField("Post-logout redirect URIs",
                                              validators=[each_line(lambda uri: validate_redirect_uri(uri, "post_logout_redirect_uri"))],
                                              description="One per line; where the client may send users after signing out.")
    grant_types = MultiCheckboxField("Grant types", choices={grant: grant for grant in GRANT_TYPES}, default=["authorization_code", "refresh_token"])
    scopes = MultiCheckboxField("Scopes", choices={scope: scope for scope in SCOPES}, default=list(SCOPES))
    token_endpoint_auth_method = SelectField("Client authentication",
                                             choices={method: method for method in AUTH_METHODS if method != "none"},
                                             default="client_secret_basic", description="How a confidential client sends its secret.")
    require_pkce = BooleanField("Require PKCE", default=True, description="Always on for public clients.")
    skip_consent = BooleanField("Skip the consent page", description="For first-party applications only.")
    backchannel_logout_uri = StringField("Back-channel logout URI", validators=[Optional(), service_rule(lambda uri: validate_https_url(uri, "backchannel_logout_uri"))],
                                         description="Optional. The IdP POSTs a logout token here when a session ends.")
    id_token_signed_response_alg = SelectField("ID token algorithm", choices={"RS256": "RS256", "ES256": "ES256"}, default="RS256")
    minimal_id_token = BooleanField("Keep the ID token minimal",
                                    description="Leave name and email out of the ID token; the application reads them from userinfo.")


class RotateForm(FlaskForm):
    alg = SelectField("Algorithm", choices=[])
    force = BooleanField("Rotate even if the next key was published less than the lead time ago",
                         description="Relying parties that cached the JWKS before the next key was published may reject "
                                     "tokens it signs until they fetch the JWKS again.")


# --- filters (GET; nothing changes, so no CSRF token) ----------------------------------------------


class FilterForm(FlaskForm):
    class Meta:
        csrf = False


class UserFilterForm(FilterForm):
    q = StringField("Email starts with", validators=[Optional(), Length(max=320)])
    status = SelectField("Show", choices=[], validators=[Optional()])


class SessionFilterForm(FilterForm):
    user = StringField("User email", validators=[Optional(), Length(max=320)])
    client = SelectField("Client", choices=[], validators=[Optional()])
    kind = SelectField("Kind", choices={"": "All", SessionKind.SSO.value: "Sign-in (SSO)", SessionKind.ADMIN.value: "Admin UI"}, validators=[Optional()])


class AuditFilterForm(FilterForm):
    actor = StringField("Actor", validators=[Optional(), Length(max=128)], description="e.g. user:42, system, cli")
    action = StringField("Action", validators=[Optional(), Length(max=64)], description="e.g. user.disabled")
    target = StringField("Target", validators=[Optional(), Length(max=128)], description="e.g. user:42, client:abc")
    since = DateTimeLocalField("From (UTC)", validators=[Optional()], format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])
    until = DateTimeLocalField("Until (UTC)", validators=[Optional()], format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])

    def validate_until(self, field):
        if field.data and self.since.data and field.data <= self.since.data:
            raise FieldError("must be after the start of the range")

    def utc(self, field) -> object:
        """A datetime-local value, read as UTC."""
        return field.data.replace(tzinfo=timezone.utc) if field.data else None
