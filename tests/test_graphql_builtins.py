"""The builtin plugins through GraphQL: your account, notifications, webhooks and the audit
log answer what REST answers the same caller, with REST's scopes, permissions and cursors."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
import sqlalchemy as sa
import time_machine

from mars_server.db import db as mars_db
from mars_server.events import ActingContext, acting_as, audit, emit
from mars_server.http import Page
from mars_server.testing import graphql, make_user, run_due_jobs, signed_in_client
from tests import webhook_fakes
from tests.webhook_receiver import Answer, Receiver

AUTHENTICATION_REQUIRED = "urn:mars:problem:authentication-required"
INSUFFICIENT_SCOPE = "urn:mars:problem:insufficient-scope"


def camel(item):
    """A REST item's keys as GraphQL names them."""
    return {
        re.sub(r"_(\w)", lambda m: m.group(1).upper(), key): value for key, value in item.items()
    }


def problem(answer):
    """The first error's problem (its ``extensions``)."""
    assert answer.get("errors"), answer
    return answer["errors"][0]["extensions"]


def invalid(client, query, **variables):
    """The message of a document GraphQL refuses to run (a 400)."""
    response = client.post("/api/v1/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 400, response.json
    return response.json["errors"][0]["message"]


def statements(db, run):
    """The SQL statements ``run()`` makes."""
    seen = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        run()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)
    return seen


# --- auth: your account on Me ---------------------------------------------------------------------

ACCOUNT = """{
  me {
    id email displayName status roles mustChangePassword createdAt lastLoginAt deletionDueAt
  }
}"""


def test_me_shows_the_account_rest_shows(app):
    admin = make_user(app, display_name="Ada Lovelace", roles=("admin", "member"))
    alice = signed_in_client(app, admin)
    rest = alice.get("/api/v1/me")
    assert rest.status_code == 200
    expected = camel(rest.json) | {"status": rest.json["status"].upper()}
    answer = graphql(alice, ACCOUNT)
    assert answer == {"data": {"me": expected}}
    assert expected["roles"] == ["admin", "member"] and expected["displayName"] == "Ada Lovelace"
    bob = signed_in_client(app)
    assert graphql(bob, "{ me { id email } }")["data"]["me"] == {
        "id": bob.user.id,
        "email": bob.user.email,
    }


def test_the_account_needs_account_read_like_rest(app):
    without = signed_in_client(app, scopes=["notifications:read"])
    assert without.get("/api/v1/me").status_code == 403
    answer = graphql(without, "{ me { email } }")
    assert answer["data"] == {"me": None}
    refused = problem(answer)
    assert refused["status"] == 403 and refused["type"] == INSUFFICIENT_SCOPE
    assert refused["scope"] == "account:read"
    # What the core's Me shows needs no scope; anonymous callers have no Me at all.
    assert graphql(without, "{ me { id } }") == {"data": {"me": {"id": without.user.id}}}
    assert graphql(app.test_client(), "{ me { email } }") == {"data": {"me": None}}
    reader = signed_in_client(app, scopes=["account:read"])
    assert graphql(reader, "{ me { email } }")["data"]["me"]["email"] == reader.user.email


def test_every_account_field_costs_one_query(app, db):
    alice = signed_in_client(app)
    every = statements(db, lambda: graphql(alice, ACCOUNT))
    users = [sql for sql in every if re.search(r"FROM auth_users\b", sql)]
    assert len(users) == 1, every


# --- notifications ------------------------------------------------------------------------------

NOTIFICATIONS = """
query($first: Int, $after: String, $unread: Boolean) {
  me {
    unreadNotifications
    notifications(first: $first, after: $after, unread: $unread) {
      nodes { id eventId eventType title body link createdAt readAt }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""
MARK_READ = "mutation($id: ID!) { markNotificationRead(id: $id) { id readAt } }"
MARK_ALL = "mutation { markAllNotificationsRead }"


@pytest.fixture
def notified(app, run_jobs):
    """Alice adds Bob to ``count`` projects of hers; Bob is notified of each. Returns both."""

    def make(count):
        alice, bob = signed_in_client(app), signed_in_client(app)
        for n in range(count):
            made = alice.post("/api/v1/projects", json={"slug": f"p-{n}", "name": f"P{n}"})
            assert made.status_code == 201, made.json
            added = alice.post(
                f"/api/v1/projects/{made.json['id']}/members",
                json={"user_id": bob.user.id, "role": "member"},
            )
            assert added.status_code == 200, added.json
        run_jobs()
        return alice, bob

    return make


def test_notifications_are_those_rest_lists(notified):
    alice, bob = notified(3)
    rest = bob.get("/api/v1/me/notifications").json
    assert len(rest["items"]) == 3
    me = graphql(bob, NOTIFICATIONS)["data"]["me"]
    assert me["notifications"]["nodes"] == [camel(item) for item in rest["items"]]
    assert me["notifications"]["pageInfo"] == {"hasNextPage": False, "endCursor": None}
    assert (
        me["unreadNotifications"]
        == bob.get("/api/v1/me/notifications/unread-count").json["unread"]
        == 3
    )
    # Alice was told nothing (she acted); Bob's are not hers.
    assert graphql(alice, NOTIFICATIONS)["data"]["me"] == {
        "unreadNotifications": 0,
        "notifications": {"nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}},
    }


def test_marking_read_goes_through_the_service(notified):
    _alice, bob = notified(3)
    first = graphql(bob, NOTIFICATIONS)["data"]["me"]["notifications"]["nodes"][0]
    marked = graphql(bob, MARK_READ, id=first["id"])["data"]["markNotificationRead"]
    assert marked["id"] == first["id"] and marked["readAt"]
    again = graphql(bob, MARK_READ, id=first["id"])["data"]["markNotificationRead"]
    assert again["readAt"] == marked["readAt"]  # the first read time is kept
    [rest] = bob.get("/api/v1/me/notifications", query_string={"unread": "false"}).json["items"]
    assert rest["read_at"] == marked["readAt"]
    unread = graphql(bob, NOTIFICATIONS, unread=True)["data"]["me"]["notifications"]["nodes"]
    read = graphql(bob, NOTIFICATIONS, unread=False)["data"]["me"]["notifications"]["nodes"]
    assert [n["id"] for n in read] == [first["id"]] and len(unread) == 2
    assert graphql(bob, MARK_ALL) == {"data": {"markAllNotificationsRead": 2}}
    assert graphql(bob, MARK_ALL) == {"data": {"markAllNotificationsRead": 0}}
    assert bob.get("/api/v1/me/notifications/unread-count").json["unread"] == 0


def test_another_persons_notification_is_not_found(app, notified):
    alice, bob = notified(1)
    [mine] = bob.get("/api/v1/me/notifications").json["items"]
    eve = signed_in_client(app)
    for client, nid in ((eve, mine["id"]), (alice, mine["id"]), (bob, "ntf_nonexistent")):
        answer = graphql(client, MARK_READ, id=nid)
        assert answer["data"] is None and problem(answer)["status"] == 404
    assert graphql(eve, NOTIFICATIONS)["data"]["me"]["notifications"]["nodes"] == []
    assert graphql(eve, MARK_ALL) == {"data": {"markAllNotificationsRead": 0}}
    assert bob.get("/api/v1/me/notifications/unread-count").json["unread"] == 1


def test_notification_scopes_are_those_of_rest(app, notified):
    _alice, bob = notified(1)
    [mine] = bob.get("/api/v1/me/notifications").json["items"]
    anonymous = app.test_client()
    for mutation, variables in ((MARK_READ, {"id": mine["id"]}), (MARK_ALL, {})):
        refused = problem(graphql(anonymous, mutation, **variables))
        assert refused["status"] == 401 and refused["type"] == AUTHENTICATION_REQUIRED
    reader = signed_in_client(app, bob.user, scopes=["notifications:read"])
    assert graphql(reader, NOTIFICATIONS)["data"]["me"]["unreadNotifications"] == 1
    for mutation, variables in ((MARK_READ, {"id": mine["id"]}), (MARK_ALL, {})):
        refused = problem(graphql(reader, mutation, **variables))
        assert refused["status"] == 403 and refused["scope"] == "notifications:write"
    other = signed_in_client(app, bob.user, scopes=["projects:read"])
    assert other.get("/api/v1/me/notifications").status_code == 403
    for field in ("notifications { nodes { id } }", "unreadNotifications"):
        answer = graphql(other, f"{{ me {{ {field} }} }}")
        assert answer["data"] == {"me": None}
        assert problem(answer)["status"] == 403
        assert problem(answer)["scope"] == "notifications:read"
    assert bob.get("/api/v1/me/notifications/unread-count").json["unread"] == 1


def test_notifications_page_with_the_cursors_of_rest(notified):
    alice, bob = notified(5)
    everything = [n["id"] for n in bob.get("/api/v1/me/notifications").json["items"]]
    rest = bob.get("/api/v1/me/notifications", query_string={"limit": 2}).json
    page = graphql(bob, NOTIFICATIONS, first=2)["data"]["me"]["notifications"]
    assert page["pageInfo"] == {"hasNextPage": True, "endCursor": rest["next_cursor"]}
    seen, pages = [n["id"] for n in page["nodes"]], 1
    while page["pageInfo"]["hasNextPage"]:
        after = page["pageInfo"]["endCursor"]
        page = graphql(bob, NOTIFICATIONS, first=2, after=after)["data"]["me"]["notifications"]
        seen += [n["id"] for n in page["nodes"]]
        pages += 1
    assert seen == everything and pages == 3
    other_filter = graphql(bob, NOTIFICATIONS, first=2, after=rest["next_cursor"], unread=True)
    assert problem(other_filter)["status"] == 400  # a cursor is bound to its filters
    cursor = graphql(bob, NOTIFICATIONS, first=2)["data"]["me"]["notifications"]["pageInfo"]
    stolen = graphql(alice, NOTIFICATIONS, first=2, after=cursor["endCursor"])
    assert problem(stolen)["status"] == 400  # and to its owner
    assert problem(graphql(bob, NOTIFICATIONS, first=201))["status"] == 422


# --- webhooks ------------------------------------------------------------------------------------

WEBHOOKS = """
query($first: Int, $after: String) {
  webhooks(first: $first, after: $after) {
    nodes {
      id url description events disabled disabledReason disabledAt failingSince
      previousSecretExpiresAt createdAt updatedAt
    }
    pageInfo { hasNextPage endCursor }
  }
}"""
WEBHOOK = """
query($id: ID!, $first: Int, $after: String, $status: WebhookDeliveryStatus) {
  webhook(id: $id) {
    id url
    deliveries(first: $first, after: $after, status: $status) {
      nodes {
        id eventId eventType status attemptCount lastAttemptAt responseStatus durationMs error
        createdAt completedAt operationId
      }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""


@pytest.fixture
def hooks_app(make_app, monkeypatch):
    """An app with the ``things`` event types, delivering to loopback receivers."""
    yield from webhook_fakes.app_with_things(make_app, monkeypatch, WEBHOOKS_ALLOW_PRIVATE=True)


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def subscribe(client, url, **fields):
    body = {"url": url, "events": [webhook_fakes.THING_CREATED]} | fields
    response = client.post("/api/v1/webhooks", json=body)
    assert response.status_code == 201, response.json
    return response.json


def rest_webhook(item):
    return camel(item) | {
        "disabledReason": item["disabled_reason"] and item["disabled_reason"].upper()
    }


def test_webhooks_are_those_rest_lists_without_secrets(hooks_app, receiver):
    alice = signed_in_client(hooks_app)
    made = [subscribe(alice, receiver.url(f"/{n}"), description=f"hook {n}") for n in range(3)]
    patched = alice.patch(
        f"/api/v1/webhooks/{made[1]['id']}",
        json={"disabled": True},
        headers={"If-Match": alice.get(f"/api/v1/webhooks/{made[1]['id']}").headers["ETag"]},
    )
    assert patched.status_code == 200, patched.json
    rest = alice.get("/api/v1/webhooks").json["items"]
    answer = graphql(alice, WEBHOOKS)
    assert answer["data"]["webhooks"]["nodes"] == [rest_webhook(item) for item in rest]
    assert answer["data"]["webhooks"]["nodes"][1]["disabledReason"] == "BY_OWNER"
    one = graphql(alice, "query($id: ID!) { webhook(id: $id) { url events } }", id=made[0]["id"])
    assert one == {"data": {"webhook": {"url": made[0]["url"], "events": ["thing.created"]}}}
    secret = invalid(alice, "{ webhooks { nodes { secret } } }")
    assert secret == "Cannot query field 'secret' on type 'Webhook'."
    text = str(graphql(alice, WEBHOOKS)) + str(graphql(alice, WEBHOOK, id=made[0]["id"]))
    assert all(hook["secret"] not in text for hook in made)


def test_another_persons_webhooks_are_never_visible(hooks_app, receiver):
    alice, bob = signed_in_client(hooks_app), signed_in_client(hooks_app)
    hook = subscribe(alice, receiver.url())
    assert bob.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    answer = graphql(bob, WEBHOOK, id=hook["id"])
    assert answer["data"] == {"webhook": None} and problem(answer)["status"] == 404
    assert graphql(bob, WEBHOOKS)["data"]["webhooks"]["nodes"] == []
    assert graphql(alice, WEBHOOK, id=hook["id"])["data"]["webhook"]["id"] == hook["id"]


def test_webhook_scopes_and_owners_are_those_of_rest(hooks_app, receiver):
    alice = signed_in_client(hooks_app)
    hook = subscribe(alice, receiver.url())
    anonymous = hooks_app.test_client()
    for query, variables in ((WEBHOOKS, {}), (WEBHOOK, {"id": hook["id"]})):
        refused = problem(graphql(anonymous, query, **variables))
        assert refused["status"] == 401 and refused["type"] == AUTHENTICATION_REQUIRED
    without = signed_in_client(hooks_app, alice.user, scopes=["projects:read"])
    assert without.get("/api/v1/webhooks").status_code == 403
    for query, variables in ((WEBHOOKS, {}), (WEBHOOK, {"id": hook["id"]})):
        refused = problem(graphql(without, query, **variables))
        assert refused["status"] == 403 and refused["scope"] == "webhooks:read"
    reader = signed_in_client(hooks_app, alice.user, scopes=["webhooks:read"])
    assert [w["id"] for w in graphql(reader, WEBHOOKS)["data"]["webhooks"]["nodes"]] == [hook["id"]]
    # An app acting for itself has no endpoints: REST's 403, from the same service.
    registered = alice.post(
        "/api/v1/apps",
        json={
            "name": "Robot",
            "client_type": "confidential",
            "redirect_uris": [],
            "scopes": ["webhooks:read"],
            "grant_types": ["client_credentials"],
        },
    )
    assert registered.status_code == 201, registered.json
    basic = base64.b64encode(
        f"{registered.json['client_id']}:{registered.json['client_secret']}".encode()
    ).decode()
    issued = anonymous.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "webhooks:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert issued.status_code == 200, issued.json
    robot = hooks_app.test_client()
    robot.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {issued.json['access_token']}"
    assert robot.get("/api/v1/webhooks").status_code == 403
    refused = problem(graphql(robot, WEBHOOKS))
    assert refused["status"] == 403 and refused["type"] == "urn:mars:problem:forbidden"


def test_webhooks_page_with_the_cursors_of_rest(hooks_app, receiver):
    alice = signed_in_client(hooks_app)
    made = [subscribe(alice, receiver.url(f"/{n}"))["id"] for n in range(5)]
    subscribe(signed_in_client(hooks_app), receiver.url("/other"))
    rest = alice.get("/api/v1/webhooks", query_string={"limit": 2}).json
    page = graphql(alice, WEBHOOKS, first=2)["data"]["webhooks"]
    assert page["pageInfo"] == {"hasNextPage": True, "endCursor": rest["next_cursor"]}
    seen = [w["id"] for w in page["nodes"]]
    while page["pageInfo"]["hasNextPage"]:
        page = graphql(alice, WEBHOOKS, first=2, after=page["pageInfo"]["endCursor"])
        page = page["data"]["webhooks"]
        seen += [w["id"] for w in page["nodes"]]
    assert seen == made


def test_deliveries_are_those_rest_lists_without_their_bodies(hooks_app, db, receiver):
    alice, bob = signed_in_client(hooks_app), signed_in_client(hooks_app)
    # The last fails, and waits for a retry long after the test.
    receiver.answer("/hook", Answer(200), Answer(200), Answer(200), Answer(500))
    hook = subscribe(alice, receiver.url())
    for n in range(4):
        emit(webhook_fakes.THING_CREATED, {"id": f"thing_{n}", "name": f"rover {n}"})
        db.session.commit()
        run_due_jobs(hooks_app)
        receiver.wait_for(n + 1)
    path = f"/api/v1/webhooks/{hook['id']}/deliveries"
    rest = alice.get(path).json["items"]
    answer = graphql(alice, WEBHOOK, id=hook["id"])["data"]["webhook"]["deliveries"]
    assert answer["nodes"] == [camel(d) | {"status": d["status"].upper()} for d in rest]
    assert [d["status"] for d in answer["nodes"]] == ["SUCCEEDED"] * 3 + ["PENDING"]
    pending = graphql(alice, WEBHOOK, id=hook["id"], status="PENDING")["data"]["webhook"]
    rest_pending = alice.get(path, query_string={"status": "pending"}).json["items"]
    assert [d["id"] for d in pending["deliveries"]["nodes"]] == [d["id"] for d in rest_pending]
    assert len(rest_pending) == 1 and rest_pending[0]["response_status"] == 500
    for field in ("body", "attempts { responseBody }"):
        query = "query($id: ID!) { webhook(id: $id) { deliveries { nodes { FIELD } } } }"
        query = query.replace("FIELD", field)
        assert invalid(alice, query, id=hook["id"]).startswith("Cannot query field")
    # Pages, with REST's cursors.
    rest_page = alice.get(path, query_string={"limit": 3}).json
    page = graphql(alice, WEBHOOK, id=hook["id"], first=3)["data"]["webhook"]["deliveries"]
    assert page["pageInfo"] == {"hasNextPage": True, "endCursor": rest_page["next_cursor"]}
    rest_next = alice.get(path, query_string={"limit": 3, "cursor": rest_page["next_cursor"]})
    after = page["pageInfo"]["endCursor"]
    last = graphql(alice, WEBHOOK, id=hook["id"], first=3, after=after)["data"]["webhook"]
    assert [d["id"] for d in page["nodes"] + last["deliveries"]["nodes"]] == [d["id"] for d in rest]
    assert [d["id"] for d in last["deliveries"]["nodes"]] == [
        d["id"] for d in rest_next.json["items"]
    ]
    assert last["deliveries"]["pageInfo"]["hasNextPage"] is False
    # Bob sees neither the endpoint nor, through it, its deliveries.
    assert bob.get(path).status_code == 404
    probe = graphql(bob, WEBHOOK, id=hook["id"])
    assert probe["data"] == {"webhook": None} and problem(probe)["status"] == 404


def test_the_deliveries_of_many_endpoints_cost_one_query_and_match_rest(hooks_app, db, receiver):
    """Each endpoint's first page of deliveries, for a whole list of endpoints, in one query
    (a window function), with the cursors REST gives; a later page is the endpoint's own."""
    from mars_server.webhooks.models import SUCCEEDED, WebhookDelivery

    alice = signed_in_client(hooks_app)
    hooks = [subscribe(alice, receiver.url() + f"/{n}") for n in range(6)]
    with hooks_app.app_context():
        for n, hook in enumerate(hooks):
            for m in range(n % 4):  # 0 to 3 deliveries each
                db.session.add(
                    WebhookDelivery(
                        endpoint_id=hook["id"],
                        event_id=f"evt_{n}_{m}",
                        event_type=webhook_fakes.THING_CREATED,
                        body="{}",
                        status=SUCCEEDED if m % 2 else "pending",
                    )
                )
        db.session.commit()
    query = """query($first: Int, $status: WebhookDeliveryStatus) {
      webhooks(first: 50) {
        nodes {
          id
          deliveries(first: $first, status: $status) {
            nodes { id status } pageInfo { hasNextPage endCursor }
          }
        }
      }
    }"""
    graphql(alice, "{ me { id } }")  # the token, looked up once and cached
    for variables in ({"first": 2}, {"first": 1, "status": "PENDING"}):
        with hooks_app.app_context():  # its engine, not the app fixture's
            seen = statements(db, lambda v=variables: graphql(alice, query, **v))
        # The endpoints, their subscriptions (loaded with them), the deliveries of them all.
        assert len(seen) == 3, seen
        answer = graphql(alice, query, **variables)["data"]["webhooks"]["nodes"]
        for node in answer:
            rest = alice.get(
                f"/api/v1/webhooks/{node['id']}/deliveries",
                query_string={"limit": variables["first"]}
                | ({"status": "pending"} if "status" in variables else {}),
            ).json
            assert [d["id"] for d in node["deliveries"]["nodes"]] == [
                d["id"] for d in rest["items"]
            ]
            assert node["deliveries"]["pageInfo"] == {
                "hasNextPage": rest["next_cursor"] is not None,
                "endCursor": rest["next_cursor"],
            }
    # Two aliases asking differently are two batches, each right.
    both = graphql(
        alice,
        """{ webhooks { nodes { a: deliveries(first: 1) { nodes { id } }
                                 b: deliveries(first: 3) { nodes { id } } } } }""",
    )["data"]["webhooks"]["nodes"]
    assert [len(n["a"]["nodes"]) for n in both] == [min(1, n % 4) for n in range(6)]
    assert [len(n["b"]["nodes"]) for n in both] == [n % 4 for n in range(6)]
    # The endCursor of a first page goes on, one endpoint at a time.
    third = next(
        n
        for n in graphql(alice, query, first=2)["data"]["webhooks"]["nodes"]
        if n["id"] == hooks[3]["id"]
    )
    rest_all = alice.get(f"/api/v1/webhooks/{hooks[3]['id']}/deliveries").json["items"]
    more = graphql(
        alice,
        WEBHOOK,
        id=hooks[3]["id"],
        first=2,
        after=third["deliveries"]["pageInfo"]["endCursor"],
    )["data"]["webhook"]["deliveries"]["nodes"]
    assert [d["id"] for d in third["deliveries"]["nodes"] + more] == [d["id"] for d in rest_all]


# --- audit ---------------------------------------------------------------------------------------

AUDIT = """
query(
  $first: Int, $after: String, $actor: String, $target: String, $action: String,
  $since: DateTime, $until: DateTime, $sort: String
) {
  auditEntries(
    first: $first, after: $after, actor: $actor, target: $target, action: $action,
    since: $since, until: $until, sort: $sort
  ) {
    nodes {
      id occurredAt actorId action target address userAgent requestId details seq prevHash hash
    }
    pageInfo { hasNextPage endCursor }
  }
}"""


def write(count, action="thing.inspected", actor_id="usr_ada"):
    with acting_as(ActingContext(actor_id=actor_id)):
        for n in range(count):
            audit(action, target=f"thg_{n}", n=n)
            mars_db.session.commit()


@pytest.fixture
def auditor(app):
    admin = make_user(app, email="auditor@example.test", roles=("admin",))
    return signed_in_client(app, admin, scopes=["audit:read"])


def entries(client, **variables):
    answer = graphql(client, AUDIT, **variables)
    assert "errors" not in answer, answer
    return answer["data"]["auditEntries"]


def test_audit_entries_are_those_rest_lists(app, auditor):
    write(2)
    write(1, "project.deleted", actor_id="usr_bob")
    rest = auditor.get("/api/v1/audit").json
    assert rest["next_cursor"] is None and len(rest["items"]) >= 3
    listed = entries(auditor)
    assert listed["nodes"] == [camel(item) for item in rest["items"]]
    assert listed["pageInfo"] == {"hasNextPage": False, "endCursor": None}
    [deleted] = entries(auditor, actor="usr_bob")["nodes"]
    assert deleted["action"] == "project.deleted" and deleted["details"] == {"n": 0}
    assert [e["target"] for e in entries(auditor, action="thing.*")["nodes"]] == ["thg_0", "thg_1"]
    assert [e["actorId"] for e in entries(auditor, target="thg_1")["nodes"]] == ["usr_ada"]
    newest = entries(auditor, sort="-id")["nodes"]
    assert [e["id"] for e in newest] == [e["id"] for e in reversed(listed["nodes"])]


def test_audit_filters_by_time_and_refuses_what_rest_refuses(app, auditor):
    start = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        write(2, "project.created")
        clock.shift(dt.timedelta(hours=1))
        write(1, "project.deleted")
    hour = dt.timedelta(hours=1)
    window = {
        "since": (start + hour).isoformat(),
        "until": (start + 2 * hour).isoformat(),
        "action": "project.*",
    }
    rest = auditor.get("/api/v1/audit", query_string=window).json["items"]
    assert [e["action"] for e in rest] == ["project.deleted"]
    assert entries(auditor, **window)["nodes"] == [camel(e) for e in rest]
    before = entries(auditor, until=(start + hour).isoformat(), action="project.*")["nodes"]
    assert [e["action"] for e in before] == ["project.created"] * 2
    for bad in (
        {"since": (start + hour).isoformat(), "until": start.isoformat()},
        {"actor": ""},
        {"first": 0},
    ):
        refused = problem(graphql(auditor, AUDIT, **bad))
        assert refused["status"] == 422, bad
    naive = auditor.post(
        "/api/v1/graphql", json={"query": AUDIT, "variables": {"since": "2026-05-01T12:00:00"}}
    )
    assert naive.status_code == 400 and "offset" in naive.json["errors"][0]["message"]


def test_only_admins_read_the_audit_log_like_rest(app, auditor):
    write(1)
    anonymous = problem(graphql(app.test_client(), AUDIT))
    assert anonymous["status"] == 401 and anonymous["type"] == AUTHENTICATION_REQUIRED
    member = signed_in_client(app)  # every scope, no admin role
    assert member.get("/api/v1/audit").status_code == 403
    refused = graphql(member, AUDIT)
    assert refused["data"] is None and problem(refused)["status"] == 403
    assert problem(refused)["type"] == "urn:mars:problem:forbidden"
    admin = make_user(app, roles=("admin",))
    unscoped = signed_in_client(app, admin, scopes=["users:read"])
    assert unscoped.get("/api/v1/audit").status_code == 403
    assert problem(graphql(unscoped, AUDIT))["scope"] == "audit:read"
    assert entries(auditor, action="thing.inspected")["nodes"][0]["target"] == "thg_0"


def test_audit_entries_page_with_the_cursors_of_rest(app, auditor):
    write(5)
    rest = auditor.get("/api/v1/audit", query_string={"limit": 2, "action": "thing.*"}).json
    page = entries(auditor, first=2, action="thing.*")
    assert page["pageInfo"] == {"hasNextPage": True, "endCursor": rest["next_cursor"]}
    seen, pages = [e["target"] for e in page["nodes"]], 1
    while page["pageInfo"]["hasNextPage"]:
        page = entries(auditor, first=2, action="thing.*", after=page["pageInfo"]["endCursor"])
        seen += [e["target"] for e in page["nodes"]]
        pages += 1
    assert seen == [f"thg_{n}" for n in range(5)] and pages == 3
    other = graphql(auditor, AUDIT, first=2, action="project.*", after=rest["next_cursor"])
    assert problem(other)["status"] == 400


def test_a_chain_position_past_32_bits_is_answered_whole(app, db, auditor):
    """`seq` is a `Long`: GraphQL's `Int` would refuse the 2,147,483,648th entry."""
    from mars_server.audit.models import AuditRecord
    from tests.test_privacy import tamper

    write(1, "thing.counted")
    with app.app_context():
        tamper(
            db,
            sa.update(AuditRecord).where(AuditRecord.action == "thing.counted").values(seq=2**40),
        )
    [entry] = entries(auditor, action="thing.counted")["nodes"]
    assert entry["seq"] == 2**40


def test_first_pages_are_only_first_pages_in_key_order(app):
    from mars_server.http import first_pages
    from mars_server.webhooks.models import WebhookDelivery

    def pages(**args):
        with app.test_request_context():
            return first_pages(
                sa.select(WebhookDelivery),
                WebhookDelivery.id,
                args,
                group=WebhookDelivery.endpoint_id,
                groups=["whk_none"],
                name=str,
            )

    assert pages(limit=5) == {"whk_none": Page([], None)}
    for refused in ({"cursor": "abc"}, {"sort": "-id"}):
        with pytest.raises(ValueError, match="first pages, in key order"):
            pages(**refused)
