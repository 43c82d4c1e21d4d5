"""End users (and admins): accounts, password hashing, token versions."""
