"""Outgoing mail: messages from templates (plain text and HTML, branded) and their delivery.

`messages.compose` builds an `EmailMessage`; `transport.deliver` hands it to the SMTP server of
IDP_SMTP_URL or, without one, writes it to `INSTANCE_DIR/mail` as an `.eml` file (development).
Nothing here queues: callers put mail in the outbox (idp/onboarding/mails.py) so that it is sent
exactly when the change that causes it commits.
"""
