"""Identity and authorization: users, sessions, API keys, OIDC, agent tokens, and the one policy point.

Every REST route, web page, `/ws` subscription and gRPC method declares the `Permission` it needs
(`permissions.py`); the policy point (`policy.py`) authenticates the caller and checks that
permission in the caller's current tenant before anything is looked up.
"""
