"""OpenID Connect: discovery, ID tokens, claims, userinfo, logout."""
