"""Deliveries to a real receiver on loopback: signatures, retries, disabling, the log."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import time

import pytest
import sqlalchemy as sa
import time_machine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mars_server.auth.models import User
from mars_server.events import Event, emit
from mars_server.events.models import Job, OutboxEvent
from mars_server.testing import run_due_jobs, signed_in_client
from mars_server.webhooks import maintenance, sending
from mars_server.webhooks.attempts import MAX_ATTEMPTS
from mars_server.webhooks.events import notifications
from mars_server.webhooks.handlers import DELIVER_BATCH, fan_out
from mars_server.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests import webhook_fakes
from tests.webhook_receiver import Answer, Receiver

BASE = "/api/v1/webhooks"
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TIMEOUT = 1.0


@pytest.fixture
def app(make_app, monkeypatch):
    yield from webhook_fakes.app_with_things(
        make_app,
        monkeypatch,
        WEBHOOKS_ALLOW_PRIVATE=True,
        PLUGINS={"webhooks": {"timeout_seconds": TIMEOUT}},
    )


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def subscribe(client, url, events=(webhook_fakes.THING_CREATED,)):
    response = client.post(BASE, json={"url": url, "events": list(events)})
    assert response.status_code == 201, response.json
    return response.json


def emit_thing(db, *, audience=None, name="rover", type=webhook_fakes.THING_CREATED):
    event = emit(type, {"id": "thing_1", "name": name}, audience=audience)
    db.session.commit()
    return event


def deliver_job(db):
    """The job of the latest attempt planned (each failed attempt plans the next as a job)."""
    db.session.expire_all()
    jobs = db.session.scalars(sa.select(Job).where(Job.task == "webhooks.deliver")).all()
    return max(jobs, key=lambda job: job.kwargs["attempts"][-1]["number"], default=None)


def endpoint_row(db, endpoint_id):
    db.session.expire_all()
    return db.session.get(WebhookEndpoint, endpoint_id)


def test_a_delivery_is_signed_as_standard_webhooks(client, db, receiver, run_jobs):
    endpoint = subscribe(client, receiver.url())
    before = int(time.time())
    event = emit_thing(db)
    run_jobs()
    [request] = receiver.wait_for(1)
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    assert before <= int(request.headers["webhook-timestamp"]) <= int(time.time())
    assert request.headers["webhook-signature"].startswith("v1,")
    assert " " not in request.headers["webhook-signature"]
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload == {
        "id": event.id,
        "type": "thing.created",
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {"id": "thing_1", "name": "rover"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(
            request.body.replace(b"rover", b"rogue"), request.headers
        )
    other_secret = client.post(f"{BASE}/{endpoint['id']}/rotate-secret").json["secret"]
    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret).verify(request.body, request.headers)

    log = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    assert [d["id"] for d in log] == [request.headers["webhook-id"]]
    assert log[0]["status"] == "succeeded"
    assert log[0]["attempt_count"] == 1
    assert log[0]["response_status"] == 200
    assert log[0]["event_id"] == event.id


def test_only_subscribed_and_enabled_endpoints_receive(app, client, db, receiver, run_jobs):
    subscribe(client, receiver.url("/created"))
    subscribe(client, receiver.url("/deleted"), events=[webhook_fakes.THING_DELETED])
    off = subscribe(client, receiver.url("/off"))
    etag = client.get(f"{BASE}/{off['id']}").headers["ETag"]
    client.patch(f"{BASE}/{off['id']}", json={"disabled": True}, headers={"If-Match": etag})
    emit_thing(db)
    run_jobs()
    assert [r.path for r in receiver.wait_for(1)] == ["/created"]


def test_both_secrets_sign_during_the_grace_period(client, db, receiver, run_jobs):
    with time_machine.travel(START, tick=False) as traveller:
        endpoint = subscribe(client, receiver.url())
        old = endpoint["secret"]
        new = client.post(f"{BASE}/{endpoint['id']}/rotate-secret").json["secret"]
        emit_thing(db)
        run_jobs()
        [first] = receiver.wait_for(1)
        assert len(first.headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):
            assert Webhook(secret).verify(first.body, first.headers)["type"] == "thing.created"

        traveller.shift(dt.timedelta(hours=24, minutes=1))
        emit_thing(db, name="later")
        run_jobs()
        second = receiver.wait_for(2)[1]
        assert len(second.headers["webhook-signature"].split(" ")) == 1
        assert Webhook(new).verify(second.body, second.headers)["data"]["name"] == "later"
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(second.body, second.headers)


def test_failed_attempts_follow_the_standard_webhooks_schedule(client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(500, body=b"boom"))
    with time_machine.travel(START, tick=False) as traveller:
        endpoint = subscribe(client, receiver.url())
        emit_thing(db)
        run_jobs()
        assert len(receiver.wait_for(1)) == 1
        # Standard Webhooks: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
        schedule = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
        for number, delay in enumerate(schedule, start=2):
            job = deliver_job(db)
            assert job.status == "queued"
            now = dt.datetime.now(dt.UTC)
            waits = (job.run_at - now).total_seconds()
            assert delay * 0.9 <= waits <= delay * 1.1, (number, waits)
            traveller.shift(dt.timedelta(seconds=waits - 1))
            run_jobs()
            assert len(receiver.requests) == number - 1, "ran before it was due"
            traveller.shift(dt.timedelta(seconds=1))
            run_jobs()
            assert len(receiver.wait_for(number)) == number
        assert deliver_job(db).status == "succeeded"  # no more attempts; the delivery failed
        assert endpoint_row(db, endpoint["id"]).disabled is False

    [item] = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    assert item["status"] == "failed"
    assert item["attempt_count"] == 8 == MAX_ATTEMPTS
    assert item["response_status"] == 500
    assert "500" in item["error"]
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {item["id"]}, "the webhook-id is the same on every attempt"
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.requests]
    assert stamps == sorted(stamps) and len(set(stamps)) == 8, "each attempt has its own time"


def test_410_disables_the_endpoint_and_tells_its_owner(app, client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(410))
    endpoint = subscribe(client, receiver.url())
    emit_thing(db)
    run_jobs()
    assert len(receiver.wait_for(1)) == 1
    assert deliver_job(db).status == "succeeded"  # not retried
    row = endpoint_row(db, endpoint["id"])
    assert row.disabled and row.disabled_reason == "gone"
    shown = client.get(f"{BASE}/{endpoint['id']}").json
    assert shown["disabled"] is True and shown["disabled_reason"] == "gone"
    assert client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"][0]["status"] == "failed"

    [told] = db.session.scalars(
        sa.select(OutboxEvent).where(OutboxEvent.type == "webhook.endpoint_disabled")
    ).all()
    assert told.audience == [client.user.id]
    assert told.payload["id"] == endpoint["id"] and told.payload["reason"] == "gone"
    drafts = app.extensions["mars"].plugins.notifications(Event.from_row(told))
    assert [d.user_id for d in drafts] == [client.user.id]
    assert "410" in drafts[0].body and endpoint["id"] in drafts[0].link

    emit_thing(db, name="ignored")
    run_jobs()
    time.sleep(0.2)
    assert len(receiver.requests) == 1, "a disabled endpoint gets nothing"
    receiver.answer("/hook", Answer(204))
    etag = client.get(f"{BASE}/{endpoint['id']}").headers["ETag"]
    enabled = client.patch(
        f"{BASE}/{endpoint['id']}", json={"disabled": False}, headers={"If-Match": etag}
    )
    assert enabled.json["disabled"] is False and enabled.json["disabled_reason"] is None
    emit_thing(db, name="welcome back")
    run_jobs()
    assert json.loads(receiver.wait_for(2)[1].body)["data"]["name"] == "welcome back"


@pytest.mark.parametrize("header", ["seconds", "date"])
def test_retry_after_is_honoured_on_429(client, db, receiver, run_jobs, header):
    with time_machine.travel(START, tick=False) as traveller:
        later = START + dt.timedelta(hours=2)
        value = "7200" if header == "seconds" else email.utils.format_datetime(later, usegmt=True)
        receiver.answer("/hook", Answer(429, headers={"Retry-After": value}), Answer(200))
        endpoint = subscribe(client, receiver.url())
        emit_thing(db)
        run_jobs()
        assert len(receiver.wait_for(1)) == 1
        job = deliver_job(db)
        assert job.status == "queued"
        assert job.run_at >= later, "waits at least as long as the receiver asked"
        traveller.shift(dt.timedelta(hours=1))
        run_jobs()
        assert len(receiver.requests) == 1
        traveller.move_to(job.run_at)
        run_jobs()
        assert len(receiver.wait_for(2)) == 2
    [item] = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    assert item["status"] == "succeeded" and item["attempt_count"] == 2


def test_a_redirect_is_a_failure_and_is_not_followed(client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(301, headers={"Location": receiver.url("/elsewhere")}))
    endpoint = subscribe(client, receiver.url())
    emit_thing(db)
    run_jobs()
    time.sleep(0.2)
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert deliver_job(db).status == "queued"
    [item] = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    assert item["status"] == "pending"
    assert item["response_status"] == 301
    assert "not followed" in item["error"]


@pytest.mark.parametrize(
    "answer",
    [
        Answer(delay=3 * TIMEOUT),
        # The body a byte at a time: each read is quick, the whole is far too slow.
        Answer(body=b"x" * 40, trickle=0.1),
    ],
    ids=["silent", "trickling"],
)
def test_an_attempt_ends_within_the_timeout(app, client, db, receiver, run_jobs, answer):
    receiver.answer("/hook", answer)
    endpoint = subscribe(client, receiver.url())
    emit_thing(db)
    run_jobs()
    finished = time.monotonic()
    [request] = receiver.wait_for(1)
    # From the request's arrival, not from run_jobs(): other due jobs (purges, the
    # audit seal) run in the same call and take their own time on a busy machine.
    took = finished - request.arrived
    assert took < TIMEOUT + 1.0, took
    [item] = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    assert item["duration_ms"] <= (TIMEOUT + 0.5) * 1000
    if answer.trickle:
        # The 200 came in time: the receiver has it, though its body was cut.
        assert item["status"] == "succeeded"
    else:
        assert item["status"] == "pending"
        assert item["response_status"] is None
        assert item["error"] == (
            f"Read timeout: no answer from 127.0.0.1 port {receiver.port} within {TIMEOUT:g} s."
        )


def test_only_the_start_of_an_answer_is_read(make_app, client, db, receiver):
    """A receiver answering 200 with 64 MiB: the attempt reads ``max_response_bytes`` (here
    1 KiB), keeps a snippet for the log, and hangs up on the rest."""
    receiver.answer("/hook", Answer(body=b"x" * (64 * 1024 * 1024)))
    limited = make_app(
        WEBHOOKS_ALLOW_PRIVATE=True,
        PLUGINS={"webhooks": {"timeout_seconds": 10, "max_response_bytes": 1024}},
    )
    endpoint = subscribe(client, receiver.url())
    emit_thing(db)
    started = time.monotonic()
    with limited.app_context():
        run_due_jobs(limited)
    assert time.monotonic() - started < 5
    assert len(receiver.wait_for(1)) == 1
    [item] = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    assert item["status"] == "succeeded"
    assert item["response_status"] == 200
    deadline = time.monotonic() + 5
    while receiver.cut_short == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.cut_short == 1, "the whole answer was read"


def test_a_subscriber_gets_only_the_events_its_owner_may_see(
    app, client, db, receiver, run_jobs, create_user
):
    subscribe(client, receiver.url("/mine"))
    stranger = create_user()
    emit_thing(db, audience=[stranger.id], name="private to a stranger")
    emit_thing(db, audience=[stranger.id, client.user.id], name="shared with me")
    emit_thing(db, audience=None, name="public")
    run_jobs()
    receiver.wait_for(2)
    time.sleep(0.2)
    names = sorted(json.loads(r.body)["data"]["name"] for r in receiver.requests)
    assert names == ["public", "shared with me"]


def test_an_inactive_owner_gets_nothing(app, client, db, receiver, run_jobs):
    subscribe(client, receiver.url())
    user = db.session.get(User, client.user.id)
    user.status = "disabled"
    db.session.commit()
    emit_thing(db)
    run_jobs()
    time.sleep(0.2)
    assert receiver.requests == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0


def test_fan_out_twice_delivers_once(app, client, db, receiver, run_jobs):
    subscribe(client, receiver.url())
    event = emit_thing(db)
    row = db.session.get(OutboxEvent, event.id)
    for _ in range(2):
        fan_out(Event.from_row(row))
        db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 1
    run_jobs()  # the relay's own fan-out job finds the delivery made
    time.sleep(0.2)
    assert len(receiver.wait_for(1)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 1


def test_the_delivery_log_and_a_redelivery(app, client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(500, body=b"database down"), Answer(200, body=b"thanks"))
    endpoint = subscribe(client, receiver.url())
    path = f"{BASE}/{endpoint['id']}/deliveries"
    event = emit_thing(db)
    run_jobs()
    [failed] = receiver.wait_for(1)

    assert client.get(path, query_string={"status": "succeeded"}).json["items"] == []
    [item] = client.get(path, query_string={"status": "pending"}).json["items"]
    detail = client.get(f"{path}/{item['id']}")
    assert detail.status_code == 200
    assert detail.json["body"] == json.loads(failed.body)
    assert detail.json["body"]["id"] == event.id
    [attempt] = detail.json["attempts"]
    assert attempt["response_status"] == 500
    assert attempt["response_body"] == "database down"
    assert isinstance(attempt["duration_ms"], int) and attempt["duration_ms"] >= 0
    assert attempt["error"] == "The receiver answered 500."
    assert attempt["series"] == 1
    assert dt.datetime.fromisoformat(attempt["attempted_at"])

    again = client.post(f"{path}/{item['id']}/redeliver")
    assert again.status_code == 202, again.json
    assert again.json["status"] == "pending"
    # A long-running operation, owned by the endpoint's owner, ends with the series.
    operation = again.headers["Location"]
    assert operation == f"/api/v1/operations/{again.json['operation_id']}"
    assert client.get(operation).json["status"] == "pending"
    stranger = signed_in_client(app)
    assert stranger.get(operation).status_code == 404
    run_jobs()
    second = receiver.wait_for(2)[1]
    assert second.headers["webhook-id"] == failed.headers["webhook-id"] == item["id"]
    assert second.body == failed.body
    assert Webhook(endpoint["secret"]).verify(second.body, second.headers)
    done = client.get(f"{path}/{item['id']}").json
    assert done["status"] == "succeeded"
    assert done["attempt_count"] == 2
    assert [(a["series"], a["response_status"]) for a in done["attempts"]] == [(1, 500), (2, 200)]
    ended = client.get(operation).json
    assert (ended["status"], ended["progress"]) == ("succeeded", 1.0)
    assert ended["result"] == f"{path}/{item['id']}"
    run_jobs()  # the first series' retry finds itself superseded: nothing more is sent
    assert len(receiver.requests) == 2
    assert [
        i["id"] for i in client.get(path, query_string={"status": "succeeded"}).json["items"]
    ] == [item["id"]]
    assert client.get(f"{path}/msg_nope").status_code == 404
    assert client.post(f"{path}/msg_nope/redeliver").status_code == 404
    assert client.get(path, query_string={"status": "lost"}).status_code == 422


def test_a_redelivery_that_fails_or_is_replaced_ends_its_operation(client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(500), Answer(500), Answer(410))
    endpoint = subscribe(client, receiver.url())
    path = f"{BASE}/{endpoint['id']}/deliveries"
    emit_thing(db)
    run_jobs()
    [item] = client.get(path).json["items"]
    first = client.post(f"{path}/{item['id']}/redeliver").headers["Location"]
    second = client.post(f"{path}/{item['id']}/redeliver").headers["Location"]
    replaced = client.get(first).json
    assert replaced["status"] == "failed" and replaced["error"]["status"] == 409
    assert "newer redelivery" in replaced["error"]["detail"]
    run_jobs()  # the second series: 500, then its retry is due later
    under_way = client.get(second).json
    assert under_way["status"] == "running" and 0 < under_way["progress"] < 1
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)):
        run_jobs()  # the retry: 410 Gone, the endpoint is disabled
    failed = client.get(second).json
    assert failed["status"] == "failed" and failed["finished_at"]
    assert failed["error"]["type"] == "urn:mars:problem:webhook-delivery-failed"
    assert "410" in failed["error"]["detail"]


def test_deleting_the_endpoint_ends_its_redeliveries(client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(500))
    endpoint = subscribe(client, receiver.url())
    path = f"{BASE}/{endpoint['id']}/deliveries"
    emit_thing(db)
    run_jobs()
    [item] = client.get(path).json["items"]
    operation = client.post(f"{path}/{item['id']}/redeliver").headers["Location"]
    etag = client.get(f"{BASE}/{endpoint['id']}").headers["ETag"]
    assert client.delete(f"{BASE}/{endpoint['id']}", headers={"If-Match": etag}).status_code == 204
    ended = client.get(operation).json
    assert ended["status"] == "failed" and ended["error"]["status"] == 410
    assert "deleted" in ended["error"]["detail"]


def test_an_endpoint_failing_for_days_is_disabled(app, client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(503))
    with time_machine.travel(START, tick=False) as traveller:
        endpoint = subscribe(client, receiver.url())
        emit_thing(db)
        run_jobs()
        assert endpoint_row(db, endpoint["id"]).failing_since == START
        traveller.shift(dt.timedelta(days=4))
        emit_thing(db, name="day 4")
        run_jobs()
        assert endpoint_row(db, endpoint["id"]).disabled is False
        traveller.shift(dt.timedelta(days=1, minutes=1))
        emit_thing(db, name="day 5")
        run_jobs()
        row = endpoint_row(db, endpoint["id"])
        assert row.disabled is True and row.disabled_reason == "failing"
        sent = len(receiver.requests)
        [told] = db.session.scalars(
            sa.select(OutboxEvent).where(OutboxEvent.type == "webhook.endpoint_disabled")
        ).all()
        assert told.payload["reason"] == "failing"
        drafts = app.extensions["mars"].plugins.notifications(Event.from_row(told))
        assert [d.user_id for d in drafts] == [client.user.id]
        assert "failed" in drafts[0].body

        traveller.shift(dt.timedelta(hours=12))
        run_jobs()
        assert len(receiver.requests) == sent, "nothing more goes to a disabled endpoint"
        statuses = {
            d["status"] for d in client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
        }
        assert statuses == {"failed"}


def test_a_success_clears_failing_since(client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(500), Answer(200))
    with time_machine.travel(START, tick=False) as traveller:
        endpoint = subscribe(client, receiver.url())
        emit_thing(db)
        run_jobs()
        assert client.get(f"{BASE}/{endpoint['id']}").json["failing_since"]
        traveller.shift(dt.timedelta(seconds=10))
        run_jobs()
        assert len(receiver.wait_for(2)) == 2
    assert client.get(f"{BASE}/{endpoint['id']}").json["failing_since"] is None


def test_deleting_an_endpoint_stops_its_pending_deliveries(client, db, receiver, run_jobs):
    receiver.answer("/hook", Answer(500))
    with time_machine.travel(START, tick=False) as traveller:
        endpoint = subscribe(client, receiver.url())
        emit_thing(db)
        run_jobs()
        etag = client.get(f"{BASE}/{endpoint['id']}").headers["ETag"]
        assert (
            client.delete(f"{BASE}/{endpoint['id']}", headers={"If-Match": etag}).status_code == 204
        )
        traveller.shift(dt.timedelta(minutes=1))
        run_jobs()
    assert len(receiver.requests) == 1
    assert deliver_job(db).status == "succeeded"


def test_a_redelivery_to_a_disabled_endpoint_is_refused(client, db, receiver, run_jobs):
    endpoint = subscribe(client, receiver.url())
    emit_thing(db)
    run_jobs()
    [item] = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    etag = client.get(f"{BASE}/{endpoint['id']}").headers["ETag"]
    client.patch(f"{BASE}/{endpoint['id']}", json={"disabled": True}, headers={"If-Match": etag})
    refused = client.post(f"{BASE}/{endpoint['id']}/deliveries/{item['id']}/redeliver")
    assert refused.status_code == 409


def test_many_deliveries_share_pooled_connections(app, client, db, receiver, run_jobs):
    subscribe(client, receiver.url())
    for n in range(20):
        emit_thing(db, name=f"n{n}")
    run_jobs()
    assert len(receiver.wait_for(20)) == 20
    transport = sending.transport()
    pool = transport.pool.connection_from_url(receiver.url())
    assert pool.num_connections == 1, "one kept-alive connection served them all"


def test_a_different_user_cannot_see_the_log(app, client, db, receiver, run_jobs):
    endpoint = subscribe(client, receiver.url())
    emit_thing(db)
    run_jobs()
    [item] = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    other = signed_in_client(app)
    path = f"{BASE}/{endpoint['id']}/deliveries/{item['id']}"
    assert other.get(path).status_code == 404
    assert other.post(f"{path}/redeliver").status_code == 404


def test_old_finished_deliveries_are_purged(app, client, db, receiver, run_jobs):
    with time_machine.travel(START, tick=False) as traveller:
        endpoint = subscribe(client, receiver.url())
        emit_thing(db, name="old and done")
        run_jobs()
        receiver.answer("/hook", Answer(500))
        emit_thing(db, name="old and pending")
        run_jobs()
        traveller.shift(dt.timedelta(days=31))
        emit_thing(db, name="recent")
        db.session.commit()
        maintenance.purge()
        db.session.commit()
    names = [
        json.loads(d.body)["data"]["name"]
        for d in db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id))
    ]
    assert "old and done" not in names
    assert "old and pending" in names  # still being retried: kept
    log = client.get(f"{BASE}/{endpoint['id']}/deliveries").json["items"]
    assert all(item["status"] != "succeeded" for item in log)


def test_a_secret_sealed_under_another_key_is_not_sent_unsigned(
    make_app, client, db, receiver, run_jobs
):
    subscribe(client, receiver.url())
    emit_thing(db)
    other_key = make_app(
        WEBHOOKS_ALLOW_PRIVATE=True, SECRET_KEY="another-secret-key-that-is-long-enough-1234"
    )
    run_due_jobs(other_key)
    time.sleep(0.2)
    assert receiver.requests == []
    db.session.expire_all()
    [item] = db.session.scalars(sa.select(WebhookDelivery)).all()
    assert item.status == "pending"
    assert item.error == "The signing secret cannot be read: rotate it."


def test_other_events_make_no_webhook_notifications(db, client):
    event = emit_thing(db)
    row = db.session.get(OutboxEvent, event.id)
    assert notifications(Event.from_row(row)) == []


def deliver_jobs(db):
    db.session.expire_all()
    return db.session.scalars(
        sa.select(Job).where(Job.task == "webhooks.deliver").order_by(Job.created_at)
    ).all()


def test_first_attempts_go_in_jobs_per_endpoint_and_batch(app, client, db, receiver, run_jobs):
    first = subscribe(client, receiver.url("/one"))
    second = subscribe(client, receiver.url("/two"))
    for n in range(DELIVER_BATCH + 5):
        emit_thing(db, name=f"n{n}")
    run_jobs()
    assert len(receiver.wait_for(2 * (DELIVER_BATCH + 5))) == 2 * (DELIVER_BATCH + 5)
    jobs = deliver_jobs(db)
    endpoint_of = {
        d.id: d.endpoint_id for d in db.session.scalars(sa.select(WebhookDelivery)).all()
    }
    per_job = [{endpoint_of[a["id"]] for a in job.kwargs["attempts"]} for job in jobs]
    assert all(len(endpoints) == 1 for endpoints in per_job), "a job serves one endpoint"
    sizes = sorted(len(job.kwargs["attempts"]) for job in jobs)
    assert sizes == [5, 5, DELIVER_BATCH, DELIVER_BATCH]
    assert {e for endpoints in per_job for e in endpoints} == {first["id"], second["id"]}
    assert {job.status for job in jobs} == {"succeeded"}


def test_an_attempt_already_recorded_is_not_made_again(app, client, db, receiver, run_jobs):
    subscribe(client, receiver.url())
    emit_thing(db)
    emit_thing(db, name="second")
    run_jobs()
    assert len(receiver.wait_for(2)) == 2
    [job] = deliver_jobs(db)
    # The same job once more, as after a worker died before marking it done.
    sending.deliver(**job.kwargs)
    db.session.commit()
    time.sleep(0.2)
    assert len(receiver.requests) == 2
    attempts = db.session.scalar(sa.select(sa.func.count()).select_from(WebhookAttempt))
    assert attempts == 2


def test_a_long_job_hands_the_rest_to_a_new_job(app, client, db, receiver, run_jobs, monkeypatch):
    monkeypatch.setattr(sending, "BATCH_SECONDS", 0.0)
    subscribe(client, receiver.url())
    for n in range(3):
        emit_thing(db, name=f"n{n}")
    run_jobs()
    assert len(receiver.wait_for(3)) == 3
    sizes = [len(job.kwargs["attempts"]) for job in deliver_jobs(db)]
    assert sizes == [3, 2, 1], "each job made one attempt and passed the others on"
    statuses = set(db.session.scalars(sa.select(WebhookDelivery.status)))
    assert statuses == {"succeeded"}
