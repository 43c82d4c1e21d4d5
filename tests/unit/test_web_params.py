"""One declarative rule per endpoint refuses repeated and oversized parameters (RFC 6749 3.1, 3.2)."""

from __future__ import annotations

import pytest
from authlib.oauth2.rfc6749 import InvalidRequestError
from werkzeug.datastructures import MultiDict

from idp.web import params
from idp.web.params import EVERY, ParameterRule


def test_a_named_parameter_may_not_repeat_but_others_may():
    rule = ParameterRule(once=("nonce",))
    assert rule.violation({"nonce": ["a", "b"]}) == "'nonce' is repeated"
    assert rule.violation({"nonce": ["a"], "resource": ["x", "y"]}) is None


def test_every_parameter_single_valued():
    assert ParameterRule(once=EVERY).violation(params.multi(MultiDict([("a", "1"), ("b", "2"), ("b", "3")]))) == "'b' is repeated"
    assert ParameterRule(once=EVERY).violation(params.multi(MultiDict([("a", "1"), ("b", "2")]))) is None


def test_lengths_are_capped_on_the_named_parameters_only():
    rule = ParameterRule(once=("state",), max_length=5, capped=("state",))
    assert rule.violation({"state": ["123456"]}) == "'state' is too long"
    assert rule.violation({"state": ["12345"], "other": ["x" * 100]}) is None
    assert ParameterRule(once=(), max_length=5).violation({"other": ["x" * 6]}) == "'other' is too long"


def test_enforce_raises_invalid_request():
    with pytest.raises(InvalidRequestError) as raised:
        params.LOGOUT.enforce({"state": ["s" * 9000]})
    assert raised.value.error == "invalid_request" and raised.value.description == "'state' is too long"
    params.AUTHORIZATION.enforce({"nonce": ["n"], "scope": ["openid"]})


def test_the_endpoint_rules():
    assert params.TOKEN.violation({"grant_type": ["a", "b"]}) == "'grant_type' is repeated"
    assert params.AUTHORIZATION.violation({"x": ["a" * 4097]}) == "'x' is too long"
    assert params.PRESENTED_TOKEN.violation({"client_id": ["a", "b"]}) == "'client_id' is repeated"
