"""The scope vocabulary is the one source of scopes, their claims and their descriptions."""

from __future__ import annotations

from idp.clients.service import validate_scope
from idp import scopes
from idp.oidc.claims import claims_for
from idp.users.models import User


def test_every_scope_is_described_in_words():
    for name in scopes.SCOPES:
        assert scopes.describe(name) != name and len(scopes.describe(name)) > 10


def test_describe_names_the_three_user_facing_scopes():
    assert scopes.describe("profile") == "See your name and profile details"
    assert scopes.describe("email").startswith("See your email address")
    assert "stay signed in" in scopes.describe("offline_access").lower()


def test_unknown_scope_is_shown_by_its_name():
    assert scopes.describe("payments:write") == "payments:write"


def test_claims_of_follows_core_5_4():
    assert scopes.claims_of("openid profile") == {"sub", "name", "preferred_username", "updated_at"}
    assert scopes.claims_of(["email"]) == {"email", "email_verified"}
    assert scopes.claims_of("offline_access") == set()
    assert scopes.claims_of(None) == set()


def test_claims_released_are_exactly_the_vocabulary_claims():
    user = User(subject="s1", email="a@example.test", name="Ada")
    assert set(claims_for(user, "openid email")) == {"sub", "email", "email_verified"}
    assert set(claims_for(user, "openid profile")) == {"sub", "name", "preferred_username"}


def test_client_validation_accepts_the_vocabulary_only():
    assert validate_scope(" ".join(scopes.SCOPES)) == " ".join(scopes.SCOPES)
    try:
        validate_scope("openid payments")
    except Exception as error:  # ValidationError names the supported scopes from the vocabulary
        assert "payments" in str(error) and "offline_access" in str(error)
    else:
        raise AssertionError("unknown scope accepted")
