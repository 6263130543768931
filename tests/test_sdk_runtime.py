"""The SDK's runtime on its own terms: client options, the shape of the generated methods,
backoff, renewals under concurrency, and the edge cases of retrying a POST."""

from __future__ import annotations

import email.utils
import inspect
import logging
import re
import threading
import time

import pytest

import mars_projects.services
import mars_sdk.resources
from mars_sdk import (
    ClientCredentials,
    Conflict,
    MarsClient,
    MarsTimeoutError,
    UnexpectedResponse,
)
from mars_sdk.errors import MarsConnectionError, parse_retry_after
from mars_sdk.oauth import OAuthTokens
from mars_sdk.pagination import Page, PageIterator
from mars_sdk.resource import Resource
from mars_sdk.retries import RetryPolicy
from mars_server.sdkgen.types import identifier
from tests.sdk.faults import Fault, FaultProxy

pytest_plugins = ["tests.sdk.fixtures"]


# --- The client's options ----------------------------------------------------------------------


def test_the_client_takes_the_documented_options():
    parameters = inspect.signature(MarsClient).parameters
    assert [(p.name, p.default) for p in parameters.values()][:6] == [
        ("base_url", inspect.Parameter.empty),
        ("token", None),
        ("auth", None),
        ("timeout", 30),
        ("max_retries", 3),
        ("user_agent", None),
    ]
    client = MarsClient("https://mars.example/", max_retries=5)
    assert client.base_url == "https://mars.example"
    assert client.retry_policy.max_retries == 5
    with pytest.raises(TypeError, match="token or auth"):
        MarsClient("https://mars.example", token="t", auth=ClientCredentials("a", "b"))


def test_the_user_agent_goes_before_the_sdks_own(sdk, live_server):
    proxy = FaultProxy(live_server)
    try:
        client = sdk(base_url=proxy.url, user_agent="rover-sync/2.1")
        client.meta.get()
        agent = proxy.seen[0].headers["User-Agent"]
        assert agent.startswith("rover-sync/2.1 mars-sdk-python/")
    finally:
        proxy.close()


def test_no_answer_within_the_timeout_is_a_timeout_error(sdk):
    silent = _silent_server()
    try:
        client = sdk(base_url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        client.retry_policy = RetryPolicy(max_retries=1, backoff=0.01)
        started = time.monotonic()
        with pytest.raises(MarsTimeoutError, match=r"no answer within 0\.3 s"):
            client.meta.get()
        assert time.monotonic() - started < 3  # two tries of 0.3 s and a short wait
    finally:
        silent.close()


def _silent_server():
    """A socket that accepts connections and never answers."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server


def test_a_path_must_start_with_a_slash(sdk):
    client = sdk(anonymous=True)
    with pytest.raises(ValueError, match="must start with '/'"):
        client.request("GET", "api/v1/meta")  # would go to http://127.0.0.1:NNNNapi/v1/meta


# --- The generated methods ---------------------------------------------------------------------


def generated_methods():
    for name in dir(mars_sdk.resources):
        resource = getattr(mars_sdk.resources, name)
        if (
            inspect.isclass(resource)
            and issubclass(resource, Resource)
            and resource is not Resource
        ):
            for method_name, method in inspect.getmembers(resource, inspect.isfunction):
                if not method_name.startswith("_"):
                    yield f"{resource.__name__}.{method_name}", method


def test_what_identifies_a_resource_goes_by_position_the_rest_by_name():
    """The path parameters, in the path's order, may be given by position
    (``client.projects.members.remove(project_id, user_id)``); every other argument is
    keyword-only."""
    methods = dict(generated_methods())
    assert len(methods) >= 40
    for name, method in methods.items():
        parameters = list(inspect.signature(method).parameters.values())
        assert parameters[0].name == "self", name
        assert method.__doc__ and method.__doc__.strip(), f"{name} has no docstring"
        path = re.search(r"``[A-Z]+ (/\S+)``", method.__doc__).group(1)
        in_path = [identifier(p) for p in re.findall(r"{(\w+)}", path)]
        positional = [p.name for p in parameters[1:] if p.kind != p.KEYWORD_ONLY]
        assert positional == in_path, f"{name} takes {positional} by position"


def test_sub_resources_hang_off_their_resource():
    client = MarsClient("https://mars.example", token="t")
    try:
        assert client.projects.members.list.__qualname__ == "ProjectsMembersResource.list"
        assert client.me.tokens.revoke.__qualname__ == "MeTokensResource.revoke"
        assert client.webhooks.deliveries.redeliver.__qualname__.startswith("WebhooksDeliveries")
        assert client.projects.members is client.projects.members
    finally:
        client.close()


# --- Backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_its_ceiling():
    policy = RetryPolicy(max_retries=6, backoff=0.5, max_backoff=4.0)
    for retry, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        waits = [policy.delay(retry) for _ in range(300)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), retry
        assert len(set(waits)) > 250, "no jitter"
        assert ceiling * 0.65 < sum(waits) / len(waits) < ceiling * 0.85
    assert policy.delay(6) is None  # no seventh retry


def test_retry_after_is_a_floor_and_may_be_an_http_date():
    policy = RetryPolicy(max_retries=3, backoff=0.5, max_retry_after=60)
    assert all(policy.delay(0, retry_after=5) == 5 for _ in range(20))
    assert policy.delay(0, retry_after=61) is None  # longer than allowed: raise at once
    in_3_s = email.utils.formatdate(time.time() + 3, usegmt=True)
    assert 1.5 < parse_retry_after(in_3_s) <= 3
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# --- Renewing credentials under concurrency ----------------------------------------------------


class CountingEndpoint:
    """A token endpoint that hands out numbered tokens, slowly."""

    def __init__(self):
        self.fetched = 0

    def token(self, form, *, client_id, client_secret):
        time.sleep(0.05)
        self.fetched += 1
        return OAuthTokens(
            access_token=f"token-{self.fetched}",
            token_type="Bearer",
            expires_at=time.time() + 900,
            refresh_token=None,
            scope="projects:read",
        )


def test_many_401s_at_once_renew_the_token_once():
    auth = ClientCredentials("mars_app_x", "mars_cs_secret")
    endpoint = CountingEndpoint()
    rejected = auth.authorization(endpoint)
    assert (rejected, endpoint.fetched) == ("Bearer token-1", 1)
    threads = [
        threading.Thread(target=auth.renew, args=(endpoint,), kwargs={"rejected": rejected})
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert endpoint.fetched == 2
    assert auth.authorization(endpoint) == "Bearer token-2"


# --- Pages -------------------------------------------------------------------------------------


def test_a_list_that_repeats_a_cursor_is_an_error_not_a_loop():
    pages = {"a": Page([2], "b"), "b": Page([3], "a")}
    iterator = PageIterator(Page([1], "a"), pages.__getitem__)
    with pytest.raises(UnexpectedResponse, match="cursor it gave before"):
        list(iterator)


# --- A POST whose answer is slow ---------------------------------------------------------------


def test_a_post_that_outlasts_the_timeout_gets_its_answer_once_ready(sdk, monkeypatch):
    """The first try times out while MARS still works on it; the retry, with the same key,
    hears that the request is still in progress (409, ``Retry-After: 1``), asks again, and
    gets the replay: one project, and no ``Conflict`` for the caller. Those waits are not
    retries: one retry is allowed here, and it is the one after the timeout."""
    real_create = mars_projects.services.create_project_for

    def slow_create(actor, data):
        time.sleep(2.0)
        return real_create(actor, data)

    monkeypatch.setattr(mars_projects.services, "create_project_for", slow_create)
    client = sdk(timeout=1.5)
    client.retry_policy = RetryPolicy(max_retries=1, backoff=0.05, max_backoff=0.1)
    statuses = []
    client.session.hooks["response"].append(lambda r, **_: statuses.append(r.status_code))
    project = client.projects.create(slug="slow", name="Slow")
    assert project.slug == "slow"
    assert statuses[0] == 409 and statuses[-1] == 201
    monkeypatch.setattr(mars_projects.services, "create_project_for", real_create)
    assert [p.id for p in client.projects.list()] == [project.id]


def test_a_post_still_running_past_the_wait_is_a_conflict(sdk, monkeypatch):
    """The SDK waits for a running first try as long as one answer may take, no longer."""
    real_create = mars_projects.services.create_project_for
    release = threading.Event()

    def stuck_create(actor, data):
        release.wait(10)
        return real_create(actor, data)

    monkeypatch.setattr(mars_projects.services, "create_project_for", stuck_create)
    # 1.5 s: each answer (the 409s) arrives well within it even on a busy machine.
    client = sdk(timeout=1.5)
    client.retry_policy = RetryPolicy(max_retries=1, backoff=0.05, max_backoff=0.1)
    try:
        with pytest.raises(Conflict) as raised:
            client.projects.create(slug="stuck", name="Stuck")
    finally:
        release.set()
    assert raised.value.problem["type"] == "urn:mars:problem:idempotency-key-in-use"


# --- Errors the wire may throw -----------------------------------------------------------------


def test_a_body_cut_mid_way_is_retried_like_a_lost_connection(sdk, live_server):
    proxy = FaultProxy(live_server)
    try:
        client = sdk(base_url=proxy.url)
        client.retry_policy = RetryPolicy(max_retries=1, backoff=0.01)
        proxy.inject(Fault("truncate", method="GET"))
        assert client.meta.get().api_version == "v1"
        assert [s.fault for s in proxy.seen] == ["truncate", None]
        proxy.inject(Fault("truncate"), Fault("truncate"))
        with pytest.raises(MarsConnectionError, match="connection failed"):
            client.meta.get()
    finally:
        proxy.close()


def test_client_secrets_and_refresh_tokens_are_never_logged(live_server, sdk, caplog):
    owner = sdk()
    app = owner.apps.create(
        name="Cron",
        client_type="confidential",
        redirect_uris=[],
        scopes=["projects:read"],
        grant_types=["client_credentials"],
    )
    caplog.set_level(logging.DEBUG)
    auth = ClientCredentials(app.client_id, app.client_secret)
    with MarsClient(live_server, auth=auth) as client:
        assert list(client.projects.list()) == []
        token = auth._tokens.access_token
    text = caplog.text + repr(auth) + repr(client)
    assert app.client_secret not in text and token not in text
