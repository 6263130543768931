"""Single sign-on's part in a person's export and erasure (docs/privacy.md)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mars_server.db import db
from mars_server.hookspecs import PersonalData
from mars_sso.models import Identity, SignInRequest

INVENTORY = [
    PersonalData(
        what="the person's identities at the identity providers: the provider's id for them "
        "(subject), the e-mail address it last gave, when they last signed in through it",
        where="sso_identities",
        why="to sign the person in through their organisation's identity provider",
        kept="until unlinked or the account is erased",
        erasure="deleted",
    ),
    PersonalData(
        what="sign-ins under way (the subject and address a provider gave, for a link to confirm)",
        where="sso_requests",
        why="to finish a sign-in or a link",
        kept="minutes (until used or expired, then purged)",
        erasure="deleted",
    ),
]


def export(user_id: str) -> dict[str, Any]:
    identities = [
        {
            "id": i.id,
            "provider": i.provider,
            "subject": i.subject,
            "email": i.email,
            "created_at": i.created_at,
            "last_sign_in_at": i.last_sign_in_at,
        }
        for i in db.session.scalars(sa.select(Identity).where(Identity.user_id == user_id))
    ]
    return {"identities": identities} if identities else {}


def erase(user_id: str) -> list[str]:
    identities = db.session.execute(sa.delete(Identity).where(Identity.user_id == user_id)).rowcount  # type: ignore[attr-defined]
    db.session.execute(sa.delete(SignInRequest).where(SignInRequest.link_user_id == user_id))
    return [f"{identities} linked identities deleted"] if identities else []
