"""Second factors and passkeys: TOTP, recovery codes, WebAuthn credentials, and the policy that asks for them."""
