"""Signing keys: generation, encryption at rest, states next -> active -> retired, the JWKS."""
