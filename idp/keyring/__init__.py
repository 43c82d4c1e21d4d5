"""Signing keys: generation, encryption at rest, rotation next -> active -> retired -> purged, the JWKS."""
