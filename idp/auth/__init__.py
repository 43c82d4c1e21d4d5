"""End-user pages: sign-in and consent, on the server-side SSO session."""
