"""Audit actors are built by one constructor per kind and stored as the same text as before."""

from __future__ import annotations

from idp.audit.actors import Actor
from idp.audit.models import AuditEvent
from idp.audit.service import record
from idp.db import db


def test_one_constructor_per_kind():
    assert Actor.user(7) == "user:7" and Actor.admin(7) == "user:7"
    assert Actor.client("abc") == "client:abc"
    assert (Actor.SYSTEM, Actor.CLI, Actor.ANONYMOUS) == ("system", "cli", "anonymous")
    assert all(isinstance(actor, Actor) for actor in (Actor.user(1), Actor.client("c"), Actor.SYSTEM))


def test_an_actor_is_stored_as_plain_text(app):
    with app.app_context():
        record("test.event", actor=Actor.client("rp-1"))
        db.session.commit()
        assert db.session.scalar(db.select(AuditEvent.actor).where(AuditEvent.action == "test.event")) == "client:rp-1"
