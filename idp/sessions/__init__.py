"""Server-side cookie sessions for end users (SSO) and admins; the cookie carries only a random id."""
