"""The core's own tables."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mars_server.db import Model, utcnow


class IdempotencyKey(Model):
    """A POST's ``Idempotency-Key`` and, once it finished, the response to replay."""

    __tablename__ = "mars_idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: whose key it is: a digest of the caller's credentials, or "anonymous".
    owner: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(255))
    #: digest of method, path, query and body: the same key with another request is 422.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16))  # "processing" | "completed"
    status_code: Mapped[int | None]
    response_headers: Mapped[dict[str, str] | None] = mapped_column(sa.JSON)
    response_body: Mapped[bytes | None] = mapped_column(sa.LargeBinary, info={"sealed": True})
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
