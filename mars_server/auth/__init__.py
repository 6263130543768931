"""The builtin ``auth`` plugin: accounts, passwords, tokens, roles and the OAuth 2 server.

It reaches the core only through hooks, like any plugin; the core reaches it only through
``mars_actor_from_request``.
"""
