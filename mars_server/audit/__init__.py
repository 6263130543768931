"""The builtin ``audit`` plugin: an append-only, hash-chained log of changes and security events."""
