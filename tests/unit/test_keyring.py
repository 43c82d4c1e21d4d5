"""The keyring: RFC 7638 kids, private keys encrypted at rest, the public JWKS."""

import json

from jwcrypto import jwk, jws
from sqlalchemy import select

from idp.db import db
from idp.keyring import service
from idp.keyring.models import KeyState, SigningKey


def test_initial_keyring_has_active_and_next_key_per_algorithm(app_ctx):
    keys = service.list_keys()
    assert sorted((k.alg, k.state) for k in keys) == [
        ("ES256", KeyState.ACTIVE), ("ES256", KeyState.NEXT), ("RS256", KeyState.ACTIVE), ("RS256", KeyState.NEXT),
    ]
    assert service.ensure_keys() == []  # idempotent


def test_kid_is_rfc7638_thumbprint_and_private_half_is_encrypted(app_ctx):
    for row in db.session.scalars(select(SigningKey)):
        public = jwk.JWK.from_json(row.public_jwk)
        assert row.kid == public.thumbprint()
        assert '"d"' not in row.public_jwk
        assert '"d"' not in row.private_jwk_encrypted and "PRIVATE" not in row.private_jwk_encrypted
        private = json.loads(service.key_encryptor().decrypt(row.private_jwk_encrypted))
        assert "d" in private


def test_jwks_lists_public_members_of_published_keys_only(app_ctx):
    keyset = json.loads(service.jwks().body)["keys"]
    assert {key["alg"] for key in keyset} == {"RS256", "ES256"}
    assert len(keyset) == 4
    for key in keyset:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()
        assert key["use"] == "sig"


def test_revoked_key_leaves_the_jwks(app_ctx):
    row = db.session.scalar(select(SigningKey).where(SigningKey.alg == "ES256", SigningKey.state == KeyState.NEXT))
    row.state = KeyState.REVOKED
    db.session.commit()
    service.invalidate_cache()
    kids = {key["kid"] for key in json.loads(service.jwks().body)["keys"]}
    assert row.kid not in kids and len(kids) == 3


def test_signing_key_signs_what_the_published_key_verifies(app_ctx):
    for alg in service.ALGORITHMS:
        kid, private = service.signing_key(alg)
        token = jws.JWS(b"payload")
        token.add_signature(private, alg=alg, protected=json.dumps({"alg": alg, "kid": kid}))
        check = jws.JWS()
        check.deserialize(token.serialize(compact=True))
        check.verify(service.verification_key(kid), alg=alg)
        assert check.payload == b"payload"
