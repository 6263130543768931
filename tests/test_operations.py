"""Long-running operations (docs/http.md#long-running-operations): 202 and a Location, an
operation only its caller sees, its progress, its result or its problem, and its end."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import time_machine

from mars_sdk import MarsClient, MarsTimeoutError, OperationFailed
from mars_server import operations
from mars_server.db import utcnow
from mars_server.http import Conflict
from mars_server.ops.models import Operation
from mars_server.testing import run_due_jobs


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _run(app, task, operation_id, **kwargs):
    """Run ``task`` as its last attempt would (no job: nothing retries it)."""
    from mars_server.db import db

    with app.app_context():
        try:
            task.run(operation_id=operation_id, **kwargs)
        except Exception:
            db.session.rollback()
            raise
        db.session.commit()


def _started(app, owner_id):
    from mars_server.db import db

    with app.app_context():
        now = utcnow()
        operation = Operation(
            id=f"op_test{now.timestamp():.6f}".replace(".", ""),
            kind="test.work",
            owner_id=owner_id,
            status="pending",
            created_at=now,
            updated_at=now,
        )
        db.session.add(operation)
        db.session.commit()
        return operation.id


def test_an_operation_succeeds_with_its_result_and_only_its_owner_sees_it(
    app, create_user, token_for
):
    owner, other = create_user(), create_user()

    def work(operation_id):
        operations.progress(operation_id, 0.5)
        return "/api/v1/somewhere/result"

    operation_id = _started(app, owner.id)
    _run(app, operations.task("test.work", work), operation_id)
    client = app.test_client()
    shown = client.get(f"/api/v1/operations/{operation_id}", headers=bearer(token_for(owner)))
    assert shown.status_code == 200
    body = shown.json
    assert (body["status"], body["progress"], body["result"]) == (
        "succeeded",
        1.0,
        "/api/v1/somewhere/result",
    )
    assert body["finished_at"] is not None and body["error"] is None
    # Anyone else: as if it did not exist.
    hidden = client.get(f"/api/v1/operations/{operation_id}", headers=bearer(token_for(other)))
    assert hidden.status_code == 404 and hidden.mimetype == "application/problem+json"
    assert client.get(f"/api/v1/operations/{operation_id}").status_code == 401


def test_a_failed_operation_says_why_in_a_problem_and_nothing_more(app, create_user, token_for):
    owner = create_user()

    def refused(operation_id):
        raise Conflict("The gadget is locked.")

    def broken(operation_id):
        raise RuntimeError("password=hunter2 at /srv/secret")

    client = app.test_client()
    headers = bearer(token_for(owner))
    first = _started(app, owner.id)
    with pytest.raises(Conflict):
        _run(app, operations.task("test.refused", refused), first)
    body = client.get(f"/api/v1/operations/{first}", headers=headers).json
    assert body["status"] == "failed" and body["result"] is None
    assert body["error"]["status"] == 409 and body["error"]["detail"] == "The gadget is locked."
    second = _started(app, owner.id)
    with pytest.raises(RuntimeError):
        _run(app, operations.task("test.broken", broken), second)
    error = client.get(f"/api/v1/operations/{second}", headers=headers).json["error"]
    assert error["type"] == "urn:mars:problem:operation-failed" and error["status"] == 500
    assert "hunter2" not in str(error)


def test_the_sdk_waits_for_an_operation_and_raises_its_problem(
    live_server, app, create_user, token_for
):
    owner = create_user()

    def refused(operation_id):
        raise Conflict("The gadget is locked.")

    client = MarsClient(live_server, token=token_for(owner))
    pending = _started(app, owner.id)
    with pytest.raises(MarsTimeoutError, match="still pending"):
        client.wait(pending, timeout=0.3, interval=0.1)
    with pytest.raises(Conflict):
        _run(app, operations.task("test.refused", refused), pending)
    with pytest.raises(OperationFailed) as failed:
        client.wait(pending, timeout=5)
    assert failed.value.status == 409 and failed.value.problem["detail"] == "The gadget is locked."
    assert failed.value.operation.kind == "test.work"


def test_finished_operations_go_after_their_retention(app, db, create_user, token_for):
    headers = bearer(token_for(create_user(), ["account:write"]))
    app.test_client().post("/api/v1/me/export", headers=headers)
    run_due_jobs(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Operation)) == 1
        from mars_server.events import enqueue

        enqueue("ops.purge_idempotency")
        db.session.commit()
    with time_machine.travel(utcnow() + dt.timedelta(days=31)):
        run_due_jobs(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Operation)) == 0
