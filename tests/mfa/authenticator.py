"""A software WebAuthn authenticator (ES256, "none" attestation) that answers the IdP's options.

It builds real authenticator data, client data and signatures, so the server verifies them with
py_webauthn as it would a browser's; each answer can be bent (origin, RP id, counter, signature).
"""

from __future__ import annotations

import hashlib
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, encode_cbor

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


class SoftAuthenticator:
    """One discoverable credential on a device-bound (or, with backed_up, synced) authenticator."""

    def __init__(self, *, backed_up: bool = False):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.count = 0
        self.backed_up = backed_up
        self.user_handle = b""

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return encode_cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _authenticator_data(self, rp_id: str, *, attested: bool) -> bytes:
        flags = UP | UV | (BE | BS if self.backed_up else 0) | (AT if attested else 0)
        data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + self.count.to_bytes(4, "big")
        if attested:
            data += bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self._cose_key()
        return data

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def _common(self, client_data: bytes) -> dict:
        credential_id = bytes_to_base64url(self.credential_id)
        return {"id": credential_id, "rawId": credential_id, "type": "public-key", "clientExtensionResults": {},
                "authenticatorAttachment": "platform", "response": {"clientDataJSON": bytes_to_base64url(client_data)}}

    def create(self, options: dict, *, origin: str, rp_id: str | None = None) -> str:
        """navigator.credentials.create(): the registration response as JSON."""
        self.user_handle = base64url_to_bytes(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": self._authenticator_data(rp_id or options["rp"]["id"], attested=True)})
        answer = self._common(client_data)
        answer["response"].update(attestationObject=bytes_to_base64url(attestation), transports=["internal"])
        return json.dumps(answer)

    def get(self, options: dict, *, origin: str, rp_id: str | None = None, advance: int = 1, corrupt: bool = False) -> str:
        """navigator.credentials.get(): the assertion as JSON; the counter moves by `advance`."""
        self.count += advance
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        authenticator_data = self._authenticator_data(rp_id or options["rpId"], attested=False)
        signature = self.key.sign(authenticator_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        if corrupt:
            signature = signature[:-1] + bytes([signature[-1] ^ 1])
        answer = self._common(client_data)
        answer["response"].update(authenticatorData=bytes_to_base64url(authenticator_data), signature=bytes_to_base64url(signature),
                                  userHandle=bytes_to_base64url(self.user_handle))
        return json.dumps(answer)
