"""When to retry a request, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Statuses that say "try again later": the request did nothing, or may be repeated safely.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Methods that may be sent twice without doing twice what they do (RFC 9110 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, never sooner than the server's ``Retry-After``.

    :param max_retries: how many times a request is sent again (0: never).
    :param backoff: the first wait, in seconds; each retry doubles it...
    :param max_backoff: ...up to this.
    :param max_retry_after: a ``Retry-After`` longer than this is not waited for: the error
        is raised at once, so a call never hangs for an hour.
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based); ``None``: do not retry."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        ceiling = min(self.max_backoff, self.backoff * 2.0**retry)
        # "Equal jitter": at least half the backoff, so retries never bunch up at zero.
        wait = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(wait, retry_after or 0.0)


def may_retry(method: str, *, idempotency_key: bool) -> bool:
    """Whether a request may be sent again: idempotent methods, and POST with a key."""
    return method in IDEMPOTENT_METHODS or (method == "POST" and idempotency_key)
