"""Who is asking, and what they may do: API tokens, OIDC/JWT bearer tokens, and scopes.

``scopes`` holds the rules (pure), ``tokens`` the API tokens in the database, ``oidc`` the
verification of JWTs against an issuer's JWKS, ``authenticator`` the one entry point the API
uses, ``exposure`` the rule that keeps authentication off only on loopback. The package
imports nothing at import time, so that settings can use ``exposure``.
"""
