"""OAuth 2.0 glue: Authlib's AuthorizationServer, grants, codes, consents and their endpoints."""
