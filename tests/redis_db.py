"""Emptying a Redis database the tests use, without disturbing the other pytest-xdist workers."""

from __future__ import annotations

from typing import Any


def empty_redis_database(client: Any) -> None:
    """Delete every key of ``client``'s database, one by one: ``FLUSHDB`` would tell every
    client tracking keys on the server (another worker's token cache too, whatever its
    database) that all its keys changed."""
    keys = list(client.scan_iter(count=1000))
    if keys:
        client.delete(*keys)
