"""MARS's real users, as Locust users (loadtests/README.md has the weights and why).

- ``Website`` (weight 7): a person on the organisation's website, signed in (a token):
  lists and reads projects, looks at notifications and marks them read.
- ``Automation`` (weight 2): an outside developer's script through the SDK's calls:
  creates projects with an ``Idempotency-Key`` (and sometimes sends the same one again, as
  a retry would), updates them with ``If-Match``, pages through lists. Its projects' events
  go to its webhook endpoint: the fan-out to the local receiver runs all along.
- ``Admin`` (weight 1): reads the audit log: the newest entries, one action, one actor,
  and the next page.

Each simulated user takes a person of its kind of its own (``people.json``, written by
``stack.py``): no two share a token, so no two race on one project. Every answer that is not
the one expected is a failure; ``run.py`` fails the run on any.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from typing import Any

from locust import HttpUser, between, task

PEOPLE: dict[str, list[dict[str, Any]]] = json.loads(
    open(os.environ["MARS_LOAD_PEOPLE"], encoding="utf-8").read()  # noqa: SIM115
)
_NEXT = {kind: itertools.count() for kind in PEOPLE}


def person(kind: str) -> dict[str, Any]:
    """The next person of ``kind`` nobody has taken yet."""
    n = next(_NEXT[kind])
    if n >= len(PEOPLE[kind]):
        raise RuntimeError(f"more {kind} users than people made for them: raise --people")
    return PEOPLE[kind][n]


class MarsUser(HttpUser):
    abstract = True
    kind = ""

    def on_start(self) -> None:
        self.me = person(self.kind)
        self.client.headers["Authorization"] = f"Bearer {self.me['token']}"
        self.client.headers["User-Agent"] = f"mars-load/{self.kind}"
        with self.client.get("/api/v1/me", name="GET /me (sign in)", catch_response=True) as r:
            if r.status_code != 200 or r.json()["id"] != self.me["user_id"]:
                r.failure(f"signed in as someone else: {r.status_code}")


class Website(MarsUser):
    weight = 7
    kind = "website"
    wait_time = between(1, 3)

    def on_start(self) -> None:
        super().on_start()
        self.projects: list[str] = []

    @task(4)
    def list_projects(self) -> None:
        r = self.client.get("/api/v1/projects?limit=20", name="GET /projects")
        if r.ok:
            self.projects = [item["id"] for item in r.json()["items"]]

    @task(3)
    def read_project(self) -> None:
        if self.projects:
            project = random.choice(self.projects)
            self.client.get(f"/api/v1/projects/{project}", name="GET /projects/{id}")

    @task(2)
    def notifications(self) -> None:
        self.client.get(
            "/api/v1/me/notifications/unread-count", name="GET /me/notifications/unread-count"
        )
        self.client.get("/api/v1/me/notifications?limit=20", name="GET /me/notifications")

    @task(1)
    def mark_read(self) -> None:
        r = self.client.get(
            "/api/v1/me/notifications?unread=true&limit=5", name="GET /me/notifications?unread"
        )
        for item in r.json()["items"][:2] if r.ok else []:
            self.client.post(
                f"/api/v1/me/notifications/{item['id']}/read",
                name="POST /me/notifications/{id}/read",
            )


class Automation(MarsUser):
    weight = 2
    kind = "automation"
    wait_time = between(1, 3)

    def on_start(self) -> None:
        super().on_start()
        self.projects: list[str] = list(self.me.get("projects", []))
        self.made = 0

    @task(1)
    def create_project(self) -> None:
        self.made += 1
        key = str(uuid.uuid4())
        slug = f"load-{self.me['user_id'][-10:]}-{self.made}"
        body = {"slug": slug, "name": f"Load {self.made}", "visibility": "private"}
        headers = {"Idempotency-Key": key}
        r = self.client.post("/api/v1/projects", json=body, headers=headers, name="POST /projects")
        if r.status_code != 201:
            return
        self.projects.append(r.json()["id"])
        if random.random() < 0.1:  # a retry after a lost answer: the same key, the same answer
            with self.client.post(
                "/api/v1/projects",
                json=body,
                headers=headers,
                name="POST /projects (replayed)",
                catch_response=True,
            ) as again:
                if again.status_code != 201 or again.json()["id"] != r.json()["id"]:
                    again.failure("an idempotent retry did not replay the first answer")

    @task(4)
    def update_project(self) -> None:
        if not self.projects:
            return
        project = random.choice(self.projects)
        r = self.client.get(f"/api/v1/projects/{project}", name="GET /projects/{id}")
        if not r.ok:
            return
        self.client.patch(
            f"/api/v1/projects/{project}",
            json={"description": f"updated by the load test {uuid.uuid4().hex[:8]}"},
            headers={"If-Match": r.headers["ETag"], "Idempotency-Key": str(uuid.uuid4())},
            name="PATCH /projects/{id}",
        )

    @task(2)
    def paginate(self) -> None:
        url = "/api/v1/projects?limit=10"
        for _ in range(5):
            r = self.client.get(url, name="GET /projects (pages)")
            cursor = r.json().get("next_cursor") if r.ok else None
            if not cursor:
                break
            url = f"/api/v1/projects?limit=10&cursor={cursor}"


class Admin(MarsUser):
    weight = 1
    kind = "admin"
    wait_time = between(2, 5)

    @task(2)
    def newest(self) -> None:
        r = self.client.get("/api/v1/audit?limit=50", name="GET /audit")
        cursor = r.json().get("next_cursor") if r.ok else None
        if cursor:
            self.client.get(f"/api/v1/audit?limit=50&cursor={cursor}", name="GET /audit (next)")

    @task(1)
    def by_action(self) -> None:
        self.client.get("/api/v1/audit?action=project.*&limit=50", name="GET /audit?action")

    @task(1)
    def by_actor(self) -> None:
        actor = random.choice(PEOPLE["automation"])["user_id"]
        self.client.get(f"/api/v1/audit?actor={actor}&limit=50", name="GET /audit?actor")
