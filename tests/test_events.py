"""Events and jobs: the outbox, handlers, tasks, retries, leases, schedules and the job admin."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa
import time_machine

from mars_server.db import db, utcnow
from mars_server.events import ActingContext, Retry, UnknownEventType, acting_as, emit, enqueue
from mars_server.events import jobs as jobs_module
from mars_server.events.models import Job, OutboxEvent
from mars_server.events.relay import dispatch_events, enqueue_schedules
from mars_server.testing import make_token, make_user, run_due_jobs, signed_in_client
from tests import fakes

THING = {"id": "thg_1", "name": "Widget"}


@pytest.fixture
def app(install_plugins, make_app):
    """An app with the ``eventful`` test plugin; its app context is pushed."""
    install_plugins(eventful="events")
    fakes.events.reset()
    app = make_app()
    with app.app_context():
        yield app
    fakes.events.reset()


def handled(kind="handled"):
    return [payload for what, payload in fakes.events.calls if what == kind]


def audit_entries(prefix: str):
    """The audit log's entries whose action starts with ``prefix``, oldest first."""
    from mars_server.audit.models import AuditRecord

    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(AuditRecord)
            .where(AuditRecord.action.startswith(prefix))
            .order_by(AuditRecord.occurred_at, AuditRecord.id)
        )
    )


def operator_id() -> str:
    from mars_server.events.context import operator

    return operator().actor_id


def job(job_id) -> Job:
    db.session.expire_all()
    return db.session.get(Job, job_id)


# --- Events ----------------------------------------------------------------------------------


def test_hook_mars_event_types(app):
    with pytest.raises(UnknownEventType, match=r"no plugin declares the event type 'thing\.made'"):
        emit("thing.made", THING)
    event = emit("thing.happened", {**THING, "secret_field": "not in the schema"})
    db.session.commit()
    row = db.session.get(OutboxEvent, event.id)
    assert row.type == "thing.happened"
    assert row.payload == THING  # dumped with the declared schema: nothing else leaks out
    assert row.dispatched_at is None
    assert event.id.startswith("evt_")
    spec = app.test_client().get("/api/v1/openapi.json").json
    webhook = spec["webhooks"]["thing.happened"]["post"]
    assert webhook["summary"] == "Something happened to a thing."
    schema = webhook["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"] == "#/components/schemas/WebhookThingHappened"
    envelope = spec["components"]["schemas"]["WebhookThingHappened"]
    assert envelope["properties"]["type"]["enum"] == ["thing.happened"]


def test_hook_mars_event_handlers(app):
    happened = emit("thing.happened", THING)
    ignored = emit("thing.ignored", {"id": "thg_2", "name": "Nothing"})
    db.session.commit()
    assert handled() == [] and handled("everything") == []  # nothing before a worker runs
    run_due_jobs(app)
    assert [e.id for e in handled()] == [happened.id]
    assert handled()[0].payload == THING
    assert {e.id for e in handled("everything")} == {happened.id, ignored.id}
    assert (
        db.session.scalar(sa.select(sa.func.count()).where(OutboxEvent.dispatched_at.is_(None)))
        == 0
    )
    run_due_jobs(app)  # nothing twice
    assert len(handled()) == 1


def test_a_rolled_back_transaction_leaves_no_event(app):
    emit("thing.happened", THING)
    enqueue("eventful.work", n=1)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxEvent)) == 0
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(Job).where(Job.task == "eventful.work")
        )
        == 0
    )
    run_due_jobs(app)
    assert fakes.events.calls == []


def test_events_carry_who_acted_and_their_audience(app):
    with acting_as(ActingContext(actor_id="usr_ada", request_id="req-1", address="192.0.2.1")):
        event = emit("thing.happened", THING, audience=["usr_ada", "usr_bob", "usr_ada"])
    db.session.commit()
    run_due_jobs(app)
    [seen] = handled()
    assert (seen.actor_id, seen.request_id) == ("usr_ada", "req-1")
    assert seen.audience == ("usr_ada", "usr_bob")
    assert seen.visible_to("usr_bob") and not seen.visible_to("usr_eve")
    assert emit("thing.happened", THING).visible_to("anyone")  # no audience: public
    assert event.id == seen.id


def test_a_handler_that_fails_is_retried_alone(app):
    original = fakes.events._handle
    calls = []

    def flaky(event):
        calls.append(event.id)
        if len(calls) == 1:
            raise RuntimeError("the first time fails")
        original(event)

    app.extensions["mars"].event_handlers["eventful.record"] = (
        app.extensions["mars"]
        .event_handlers["eventful.record"]
        .__class__("eventful.record", ("thing.happened",), flaky)
    )
    emit("thing.happened", THING)
    db.session.commit()
    with time_machine.travel(utcnow(), tick=False) as clock:
        run_due_jobs(app)
        assert len(calls) == 1 and len(handled("everything")) == 1  # the other handler is done
        clock.shift(dt.timedelta(seconds=2))
        run_due_jobs(app)
    assert len(calls) == 2
    assert len(handled()) == 1


# --- Tasks -----------------------------------------------------------------------------------


def test_hook_mars_tasks(app):
    with pytest.raises(jobs_module.UnknownTask):
        enqueue("eventful.nothing")
    job_id = enqueue("eventful.work", n=1, label="first")
    db.session.commit()
    run_due_jobs(app)
    assert handled("ran") == [{"n": 1, "label": "first", "attempt": 1}]
    done = job(job_id)
    assert (done.status, done.attempts, done.claim) == ("succeeded", 1, None)
    assert done.finished_at is not None


def test_failures_back_off_then_the_job_is_dead(app):
    fakes.events.failures.extend([RuntimeError("boom 1"), OSError("boom 2"), ValueError("boom 3")])
    job_id = enqueue("eventful.work", n=2)
    db.session.commit()
    with time_machine.travel(utcnow(), tick=False) as clock:
        run_due_jobs(app)
        first = job(job_id)
        assert (first.status, first.attempts) == ("queued", 1)
        assert "RuntimeError: boom 1" in first.last_error
        wait = (first.run_at - utcnow()).total_seconds()
        assert 0.5 <= wait <= 1.0  # 1 s backoff with jitter
        run_due_jobs(app)
        assert job(job_id).attempts == 1  # not due yet
        clock.shift(dt.timedelta(seconds=1))
        run_due_jobs(app)
        second = job(job_id)
        assert second.attempts == 2
        assert 1.0 <= (second.run_at - utcnow()).total_seconds() <= 2.0
        clock.shift(dt.timedelta(seconds=2))
        run_due_jobs(app)
    dead = job(job_id)
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert "ValueError: boom 3" in dead.last_error


def test_retry_delays_and_retry_after(app):
    job_id = enqueue("eventful.scheduled", n=3)
    fakes.events.failures.extend([RuntimeError("down"), Retry("busy", after=600)])
    db.session.commit()
    with time_machine.travel(utcnow(), tick=False) as clock:
        run_due_jobs(app)
        assert 4.5 <= (job(job_id).run_at - utcnow()).total_seconds() <= 5.5  # retry_delays[0]
        clock.shift(dt.timedelta(seconds=6))
        run_due_jobs(app)
        assert 600 <= (job(job_id).run_at - utcnow()).total_seconds() <= 601  # Retry-After wins


def test_retry_keeps_what_the_task_wrote(app, make_app):
    from mars_server.events.models import ScheduleState

    def write_then_retry(**_):
        db.session.add(
            ScheduleState(name=f"written-{len(fakes.events.calls)}", next_run_at=utcnow())
        )
        fakes.events.calls.append(("ran", {}))
        raise Retry("kept") if len(fakes.events.calls) == 1 else RuntimeError("dropped")

    app.extensions["mars"].tasks["eventful.work"] = (
        app.extensions["mars"]
        .tasks["eventful.work"]
        .__class__("eventful.work", write_then_retry, max_attempts=2)
    )
    enqueue("eventful.work")
    db.session.commit()
    with time_machine.travel(utcnow(), tick=False) as clock:
        run_due_jobs(app)
        clock.shift(dt.timedelta(hours=1))
        run_due_jobs(app)
    names = set(db.session.scalars(sa.select(ScheduleState.name)))
    assert "written-0" in names  # the Retry attempt's write committed
    assert "written-1" not in names  # the failed attempt's write was rolled back


def test_a_key_makes_enqueueing_idempotent(app):
    assert enqueue("eventful.work", key="only-once", n=1)
    db.session.commit()
    assert enqueue("eventful.work", key="only-once", n=2) is None
    db.session.commit()
    run_due_jobs(app)
    assert handled("ran") == [{"n": 1, "attempt": 1}]


def test_a_job_whose_worker_died_is_taken_again_after_its_lease(app):
    job_id = enqueue("eventful.scheduled", n=4)  # a 30 s lease
    db.session.commit()
    with time_machine.travel(utcnow(), tick=False) as clock:
        [lost] = jobs_module.claim_due(10)  # a worker takes it, then dies
        assert job(job_id).status == "running"
        assert jobs_module.claim_due(10) == []  # leased: nobody else takes it
        clock.shift(dt.timedelta(seconds=31))
        [again] = jobs_module.claim_due(10)
        assert again.attempts == 2 and again.claim != lost.claim
        # The first worker comes back to life: its lease is gone, its result does not count.
        assert jobs_module.run_claimed(lost) == "running"
        assert jobs_module.run_claimed(again) == "succeeded"
    assert job(job_id).status == "succeeded"


def test_concurrent_workers_never_take_the_same_job(app):
    ids = {enqueue("eventful.work", n=i) for i in range(60)}
    db.session.commit()
    taken: list[list[str]] = []
    errors = []

    def claim():
        with app.app_context():
            try:
                mine = []
                while batch := jobs_module.claim_due(5):
                    mine.extend(job.id for job in batch)
                taken.append(mine)
            except Exception as error:
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    everything = [job_id for mine in taken for job_id in mine]
    assert sorted(everything) == sorted(ids)  # each job once, none twice


def test_a_worker_claims_ahead_and_gives_back_what_it_did_not_start(app):
    from mars_server.events.worker import Worker

    slow = enqueue("eventful.sleep", seconds=1.0)
    waiting = [enqueue("eventful.work", n=i) for i in range(3)]
    db.session.commit()
    worker = Worker(app, concurrency=1, poll_seconds=0.05)
    thread = worker.start_in_thread()
    try:
        deadline = time.monotonic() + 10
        while job(slow).status != "running" or job(waiting[0]).status != "running":
            assert time.monotonic() < deadline, "the worker did not claim ahead"
            time.sleep(0.02)
        # One thread, one job running, the next one already claimed: a claim took two.
        assert job(slow).claim == job(waiting[0]).claim
        assert job(waiting[1]).status == "queued"
    finally:
        worker.stop()
        thread.join(10)
    assert job(slow).status == "succeeded"
    given_back = job(waiting[0])
    assert (given_back.status, given_back.attempts, given_back.claim) == ("queued", 0, None)
    assert given_back.run_at <= utcnow()


def test_the_relay_looks_for_schedules_only_when_one_is_due(install_plugins, make_app):
    from mars_server.events.models import ScheduleState
    from mars_server.events.worker import Worker

    install_plugins(eventful="events")
    fakes.events.with_schedule = True
    app = make_app()
    with app.app_context():
        worker = Worker(app, poll_seconds=0.05)
        with time_machine.travel(utcnow(), tick=False) as clock:
            assert worker.relay_once(force=False) >= 1  # the first pass enqueues it
            statements = []
            sa.event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
            # The soonest schedule is the audit seal's, every 5 s.
            clock.shift(dt.timedelta(seconds=2))
            worker.relay_once(force=False)
            assert not any("mars_schedules" in sql for sql in statements)
            clock.shift(dt.timedelta(seconds=59))
            worker.relay_once(force=False)
            assert any("mars_schedules" in sql for sql in statements)
        state = db.session.get(ScheduleState, "eventful.every_minute")
        assert state is not None
        ran = db.session.scalar(sa.select(sa.func.count()).where(Job.task == "eventful.scheduled"))
        assert ran == 2


# --- Schedules -------------------------------------------------------------------------------


def test_hook_mars_schedules(install_plugins, make_app):
    install_plugins(eventful="events")
    fakes.events.with_schedule = True
    app = make_app()

    def scheduled() -> int:
        query = sa.select(sa.func.count()).where(Job.task == "eventful.scheduled")
        return db.session.scalar(query)

    with app.app_context(), time_machine.travel(utcnow(), tick=False) as clock:
        enqueue_schedules()
        assert scheduled() == 1
        enqueue_schedules()  # a second relay, the same minute: nothing more
        clock.shift(dt.timedelta(seconds=59))
        enqueue_schedules()
        assert scheduled() == 1
        clock.shift(dt.timedelta(seconds=1))
        enqueue_schedules()
        assert scheduled() == 2


def test_a_schedule_must_name_a_declared_task(install_plugins, make_app, monkeypatch):
    from mars_server.hookspecs import Schedule
    from mars_server.plugins import PluginError

    install_plugins(eventful="events")
    monkeypatch.setattr(
        fakes.Events,
        "mars_schedules",
        fakes.hookimpl(
            lambda self: [Schedule("broken", "eventful.missing", dt.timedelta(hours=1))]
        ),
    )
    with pytest.raises(PluginError, match="schedule 'broken' names no declared task"):
        make_app()

    monkeypatch.setattr(
        fakes.Events,
        "mars_schedules",
        fakes.hookimpl(
            lambda self: [
                Schedule("keyed", "eventful.work", dt.timedelta(hours=1), {"key": "k", "n": 1})
            ]
        ),
    )
    with pytest.raises(PluginError) as reserved:
        make_app()
    assert str(reserved.value) == (
        "schedule 'keyed': kwargs key are enqueue()'s own options, not task arguments; rename them"
    )


# --- Notifications and audit entries, as the hooks see them --------------------------------


def test_hook_mars_notifications(app):
    owner = make_user(app, email="owner@example.test")
    emit("thing.happened", {**THING, "owner_id": owner.id})
    db.session.commit()
    run_due_jobs(app)
    client = app.test_client()
    token = make_token(app, owner, ["notifications:read"])
    response = client.get("/api/v1/me/notifications", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [n["title"] for n in response.json["items"]] == ["Widget happened"]


def test_hook_mars_audit_entry(app):
    with acting_as(
        ActingContext(actor_id="usr_ada", address="192.0.2.7", user_agent="ua/1", request_id="r-9")
    ):
        emit("thing.happened", THING)
        from mars_server.events import audit

        audit("thing.inspected", target="thg_1", reason="curiosity")
    [emitted, inspected] = fakes.events.audit
    assert (emitted.action, emitted.target, emitted.actor_id) == (
        "thing.happened",
        "thg_1",
        "usr_ada",
    )
    assert emitted.details == THING
    assert (inspected.action, inspected.details) == ("thing.inspected", {"reason": "curiosity"})
    assert (inspected.address, inspected.user_agent, inspected.request_id) == (
        "192.0.2.7",
        "ua/1",
        "r-9",
    )
    db.session.rollback()


# --- Operators: the command line and the admin API ------------------------------------------


@pytest.fixture
def dead_job(app):
    fakes.events.failures.append(RuntimeError("no"))
    job_id = enqueue("eventful.work", n=9, max_attempts=1)
    db.session.commit()
    run_due_jobs(app)
    assert job(job_id).status == "dead"
    return job_id


def test_jobs_commands(app, dead_job):
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["jobs", "list", "--status", "dead"])
    assert listed.exit_code == 0, listed.output
    assert dead_job in listed.output and "RuntimeError: no" in listed.output
    assert runner.invoke(args=["jobs", "retry"]).exit_code == 2
    retried = runner.invoke(args=["jobs", "retry", dead_job])
    assert retried.exit_code == 0 and "1 job(s) queued again" in retried.output
    assert runner.invoke(args=["jobs", "retry", dead_job]).exit_code == 0  # queued: still fine
    ran = runner.invoke(args=["jobs", "run"])
    assert ran.exit_code == 0, ran.output
    assert job(dead_job).status == "succeeded"
    fakes.events.failures.append(RuntimeError("again"))
    enqueue("eventful.work", max_attempts=1)
    db.session.commit()
    run_due_jobs(app)
    purged = runner.invoke(args=["jobs", "purge", "--dead"])
    assert purged.exit_code == 0 and "1 dead jobs" in purged.output
    assert runner.invoke(args=["jobs", "retry", "job_nope"]).exit_code == 1
    # Each override is in the audit log, as the operator's.
    logged = audit_entries("jobs.")
    assert [entry.action for entry in logged] == [
        "jobs.retried",
        "jobs.retried",
        "jobs.purged",
        "jobs.dead_purged",
    ]
    assert {entry.actor_id for entry in logged} == {operator_id()}
    assert logged[0].target == dead_job and logged[0].details["previous_status"] == "dead"
    assert logged[-1].details["count"] == 1


def test_jobs_api_is_for_admins(app, dead_job):
    client = app.test_client()
    admin = make_user(app, roles=("admin",))
    member = make_user(app)
    headers = {"Authorization": f"Bearer {make_token(app, admin, ['jobs:read', 'jobs:write'])}"}
    member_headers = {"Authorization": f"Bearer {make_token(app, member, ['jobs:read'])}"}
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/api/v1/jobs", headers=member_headers).status_code == 403
    page = client.get("/api/v1/jobs", query_string={"status": "dead"}, headers=headers)
    assert page.status_code == 200
    assert [j["id"] for j in page.json["items"]] == [dead_job]
    assert page.json["items"][0]["last_error"].startswith("RuntimeError: no")
    assert (
        client.get("/api/v1/jobs", query_string={"status": "lost"}, headers=headers).status_code
        == 422
    )
    assert client.get(f"/api/v1/jobs/{dead_job}", headers=headers).json["status"] == "dead"
    assert client.get("/api/v1/jobs/job_nope", headers=headers).status_code == 404
    retried = client.post(f"/api/v1/jobs/{dead_job}/retry", headers=headers)
    assert retried.status_code == 200 and retried.json["status"] == "queued"
    run_due_jobs(app)
    conflict = client.post(f"/api/v1/jobs/{dead_job}/retry", headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["Content-Type"] == "application/problem+json"
    [retried_entry] = audit_entries("jobs.")  # the refused retry left nothing
    assert (retried_entry.action, retried_entry.actor_id) == ("jobs.retried", admin.id)


def test_purge_keeps_recent_and_dead_work(app, dead_job):
    from mars_server.events import maintenance

    emit("thing.happened", THING)
    db.session.commit()
    run_due_jobs(app)
    assert maintenance.purge() == {"events": 0, "jobs": 0}
    with time_machine.travel(utcnow() + dt.timedelta(days=31), tick=False):
        counts = maintenance.purge()
        db.session.commit()
    assert counts["events"] == 1 and counts["jobs"] >= 3
    assert job(dead_job).status == "dead"


def test_dispatching_is_batched_and_complete(app):
    for i in range(1200):
        emit("thing.ignored", {"id": f"thg_{i}", "name": "n"})
    db.session.commit()
    assert dispatch_events() == 500
    assert dispatch_events() == 500
    assert dispatch_events() == 200
    assert dispatch_events() == 0
    handler_jobs = db.session.scalars(
        sa.select(Job).where(Job.task == "events.handle").order_by(Job.created_at, Job.key)
    ).all()
    # The "*" handler gets every event once, in jobs of at most its batch; the typed one none.
    assert {
        job.kwargs["handler"] for job in handler_jobs if "eventful" in job.kwargs["handler"]
    } == {"eventful.everything"}
    covered = [
        event_id
        for job in handler_jobs
        if job.kwargs["handler"] == "eventful.everything"
        for event_id in job.kwargs["event_ids"]
    ]
    assert len(covered) == len(set(covered)) == 1200
    sizes = [
        len(job.kwargs["event_ids"])
        for job in handler_jobs
        if job.kwargs["handler"] == "eventful.everything"
    ]
    assert max(sizes) == 100 and len(sizes) == 12
    for job in handler_jobs:
        assert job.key == f"{job.kwargs['handler']}:{job.kwargs['event_ids'][0]}"


def test_a_batch_goes_to_handle_many_in_the_order_events_happened(app):
    seen: list[list[str]] = []
    handlers = app.extensions["mars"].event_handlers
    handlers["eventful.record"] = dataclasses.replace(
        handlers["eventful.record"], handle_many=lambda events: seen.append([e.id for e in events])
    )
    emitted = [emit("thing.happened", {"id": f"thg_{i}", "name": "n"}).id for i in range(5)]
    db.session.commit()
    run_due_jobs(app)
    assert seen == [emitted]  # one call for the five, not five calls
    assert handled() == []  # handle() is not called when handle_many is given


def test_one_bad_event_in_a_batch_holds_back_no_other(app):
    bad = emit("thing.happened", {"id": "thg_bad", "name": "poison"}).id
    good = [emit("thing.happened", {"id": f"thg_{i}", "name": "n"}).id for i in range(3)]
    db.session.commit()
    attempts: list[str] = []
    original = fakes.events._handle

    def picky(event):
        attempts.append(event.id)
        if event.payload["name"] == "poison":
            raise ValueError("cannot handle this one")
        original(event)

    handlers = app.extensions["mars"].event_handlers
    handlers["eventful.record"] = dataclasses.replace(handlers["eventful.record"], handle=picky)
    run_due_jobs(app)
    # The batch failed on its first event and wrote nothing; then each event ran alone.
    assert attempts[0] == bad and attempts.count(bad) == 2
    assert sorted(e.id for e in handled()) == sorted(good)
    alone = db.session.scalars(
        sa.select(Job).where(Job.task == "events.handle", Job.key.is_(None))
    ).all()
    by_event = {job.kwargs["event_ids"][0]: job for job in alone}
    assert set(by_event) == {bad, *good}
    assert by_event[bad].status == "queued" and by_event[bad].attempts == 1  # retried later
    assert {by_event[g].status for g in good} == {"succeeded"}


def test_events_committed_while_a_plugin_is_disabled_never_reach_it(install_plugins, make_app):
    """The documented decision (docs/events.md): a disabled plugin's handlers are not given the
    events of that time, then or later; the others are."""
    install_plugins(listener="listener")
    fakes.listener.heard.clear()
    listening = make_app()
    owner = signed_in_client(listening)
    created = owner.post("/api/v1/projects", json={"slug": "heard", "name": "Heard"})
    run_due_jobs(listening)
    assert fakes.listener.heard == ["project.created"]

    off = make_app(PLUGINS_DISABLED=["listener"])
    client = off.test_client()
    client.environ_base.update(owner.environ_base)
    project = client.get(f"/api/v1/projects/{created.json['id']}")
    deleted = client.delete(
        f"/api/v1/projects/{created.json['id']}", headers={"If-Match": project.headers["ETag"]}
    )
    assert deleted.status_code == 204
    run_due_jobs(off)

    run_due_jobs(make_app())  # enabled again: what happened meanwhile is not replayed
    assert fakes.listener.heard == ["project.created"]
    with off.app_context():
        [relayed] = db.session.scalars(
            sa.select(OutboxEvent).where(OutboxEvent.type == "project.deleted")
        ).all()
        assert relayed.dispatched_at is not None  # relayed, to the handlers then enabled
