"""Web policy, one home each: request-parameter rules, security headers, safe redirects, error rendering."""
