"""Tokens: JWT access tokens (RFC 9068), rotating refresh-token families, the jti denylist."""
