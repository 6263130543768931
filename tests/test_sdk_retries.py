"""Retries, backoff and deprecation warnings, through a fault-injecting proxy on loopback."""

from __future__ import annotations

import time
import warnings

import pytest

from mars_sdk import MarsClient, RateLimited, ServerError
from mars_sdk.errors import MarsConnectionError
from mars_sdk.retries import RetryPolicy
from tests.sdk.faults import Fault, FaultProxy

pytest_plugins = ["tests.sdk.fixtures"]


@pytest.fixture
def proxy(live_server):
    proxy = FaultProxy(live_server)
    yield proxy
    proxy.close()


@pytest.fixture
def client(sdk, proxy):
    """An SDK client that talks to MARS through the proxy, with short backoffs."""
    client = sdk(base_url=proxy.url)
    client.retry_policy = RetryPolicy(max_retries=3, backoff=0.05, max_backoff=0.2)
    return client


def test_a_reset_connection_is_retried(client, proxy):
    project = client.projects.create(slug="p", name="P")
    proxy.inject(Fault("reset", method="GET"))
    assert client.projects.get(project_id=project.id) == project
    gets = [s for s in proxy.seen if s.method == "GET"]
    assert [s.fault for s in gets] == ["reset", None]
    assert gets[0].headers["X-Request-ID"] == gets[1].headers["X-Request-ID"]


def test_retry_after_is_waited_for(client, proxy):
    proxy.inject(Fault("status", 429, {"Retry-After": "1"}, method="GET"))
    started = time.monotonic()
    assert client.me.get().id == client.user.id
    assert time.monotonic() - started >= 1.0
    assert [s.fault for s in proxy.seen] == ["status", None]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_and_unavailable_statuses_are_retried(client, proxy, status):
    proxy.inject(Fault("status", status), Fault("status", status))
    assert client.meta.get().api_version == "v1"
    assert [s.fault for s in proxy.seen] == ["status", "status", None]


def test_retries_end_with_the_last_error(client, proxy):
    proxy.inject(*[Fault("status", 503, {"Retry-After": "0"})] * 4)
    with pytest.raises(ServerError) as raised:
        client.meta.get()
    assert raised.value.status == 503 and len(proxy.seen) == 4  # the first try + 3 retries
    assert raised.value.request_id == proxy.seen[0].headers["X-Request-ID"]
    assert raised.value.problem["title"] == "Injected"


def test_rate_limited_carries_retry_after(client, proxy):
    client.retry_policy = RetryPolicy(max_retries=0)
    proxy.inject(Fault("status", 429, {"Retry-After": "7"}))
    with pytest.raises(RateLimited) as raised:
        client.me.get()
    assert (raised.value.status, raised.value.retry_after) == (429, 7.0)
    assert raised.value.request_id == proxy.seen[0].headers["X-Request-ID"]


def test_a_retry_after_longer_than_allowed_is_not_waited_for(client, proxy):
    proxy.inject(Fault("status", 429, {"Retry-After": "3600"}))
    started = time.monotonic()
    with pytest.raises(RateLimited):
        client.me.get()
    assert time.monotonic() - started < 1 and len(proxy.seen) == 1


def test_a_post_is_retried_with_the_same_key_and_creates_one_object(client, proxy):
    """MARS creates the project, the answer is lost; the retry gets the replayed answer."""
    proxy.inject(Fault("forward_then_reset", method="POST"))
    project = client.projects.create(slug="once", name="Once")
    posts = [s for s in proxy.seen if s.method == "POST"]
    assert [s.fault for s in posts] == ["forward_then_reset", None]
    keys = {s.headers["Idempotency-Key"] for s in posts}
    assert len(keys) == 1 and keys != {""}
    assert [p.id for p in client.projects.list()] == [project.id]


def test_each_post_gets_its_own_key(client, proxy):
    client.projects.create(slug="one", name="One")
    client.projects.create(slug="two", name="Two")
    keys = [s.headers["Idempotency-Key"] for s in proxy.seen if s.method == "POST"]
    assert len(set(keys)) == 2


def test_patch_is_not_retried(client, proxy):
    project = client.projects.create(slug="p", name="P")
    proxy.inject(Fault("status", 503, method="PATCH"))
    with pytest.raises(ServerError):
        client.projects.update(project_id=project.id, if_match=project, name="Q")
    assert [s.method for s in proxy.seen if s.fault] == ["PATCH"]
    assert client.projects.get(project_id=project.id).name == "P"


def test_connection_errors_become_mars_connection_error(sdk):
    with MarsClient("http://127.0.0.1:9", max_retries=1) as client:  # nothing listens there
        client.retry_policy = RetryPolicy(max_retries=1, backoff=0.01)
        with pytest.raises(MarsConnectionError) as raised:
            client.meta.get()
    assert raised.value.status is None and raised.value.request_id


def test_deprecation_headers_warn_with_the_operation_and_dates(client, proxy):
    proxy.inject(
        Fault(
            "forward",
            headers={"Deprecation": "@1767225600", "Sunset": "Wed, 01 Jul 2026 00:00:00 GMT"},
        )
    )
    with pytest.warns(DeprecationWarning, match="get_meta is deprecated") as caught:
        client.meta.get()
    [warning] = caught
    assert str(warning.message) == (
        "MARS operation get_meta is deprecated since 2026-01-01; "
        "it will be removed on 2026-07-01 (Sunset)"
    )
    assert warning.filename == __file__  # it points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client.meta.get()  # no headers, no warning


def test_client_request_retries_a_post_with_its_own_key(client, proxy):
    proxy.inject(Fault("forward_then_reset", method="POST"))
    response = client.request("POST", "/api/v1/projects", json={"slug": "raw", "name": "Raw"})
    assert response.status_code == 201 and response.headers["Idempotent-Replayed"] == "true"
    keys = {s.headers["Idempotency-Key"] for s in proxy.seen if s.method == "POST"}
    assert len(keys) == 1
    assert [p.slug for p in client.projects.list()] == ["raw"]
