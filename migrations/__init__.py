"""Alembic migrations of the IdP's schema (run with `idp db upgrade`)."""
