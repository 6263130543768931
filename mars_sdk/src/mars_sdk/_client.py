"""The hand-written core of :class:`~mars_sdk.MarsClient`: sending, retrying, reading.

The generated resource classes describe each operation with an :class:`Operation` and
call :meth:`BaseClient._call` or :meth:`BaseClient._paginate`.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import requests

from mars_sdk._deprecation import warn_if_deprecated
from mars_sdk._version import __version__
from mars_sdk.auth import TokenAuth
from mars_sdk.errors import (
    GraphQLError,
    MarsConnectionError,
    MarsError,
    MarsTimeoutError,
    OperationFailed,
    UnexpectedResponse,
    error_from_response,
    parse_retry_after,
)
from mars_sdk.oauth import TokenEndpoint
from mars_sdk.pagination import Page, PageIterator
from mars_sdk.retries import RETRY_STATUSES, RetryPolicy, may_retry
from mars_sdk.types import UNSET, HasETag

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from mars_sdk.auth import Auth

log = logging.getLogger("mars_sdk")
T = TypeVar("T")
R = TypeVar("R", bound=HasETag)


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the OpenAPI document, as the generated code describes it."""

    operation_id: str
    method: str
    path: str
    #: it accepts ``Idempotency-Key`` (the SDK then sends one, and may retry)
    idempotency_key: bool = False


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_query_value(v) for v in value]
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items() if v is not UNSET}
    return value


#: The problem MARS answers while the first request with the same ``Idempotency-Key`` is
#: still running: asked again, it replays that request's response once it is done.
KEY_IN_USE = "urn:mars:problem:idempotency-key-in-use"


def _key_in_use(response: requests.Response) -> bool:
    if "json" not in response.headers.get("Content-Type", ""):
        return False
    try:
        problem = response.json()
    except ValueError:
        return False
    return isinstance(problem, dict) and problem.get("type") == KEY_IN_USE


def no_content(data: Any) -> None:
    """The reader of operations that answer without a body."""


def list_of(parse: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    """A reader of ``{"items": [...]}`` lists that come in one piece."""

    def parse_items(data: Any) -> list[T]:
        return [parse(item) for item in data["items"]]

    return parse_items


def etag_value(value: str | HasETag) -> str:
    """An ETag given as itself or as the model that carries it."""
    if isinstance(value, str):
        return value
    if value.etag is None:
        raise ValueError(f"{type(value).__name__} carries no ETag; fetch it with get_... first")
    return value.etag


GRAPHQL_PATH = "/api/v1/graphql"
#: A mutation operation in a GraphQL document (after its comments are taken out).
_MUTATION = re.compile(r"(?:^|[}\s])mutation\b")
_COMMENT = re.compile(r"#[^\n]*")
#: What a GraphQL answer is sent as (a problem document is something else).
GRAPHQL_MEDIA_TYPES = ("application/graphql-response+json", "application/json")


class BaseClient:
    """A session with one MARS; see :class:`mars_sdk.MarsClient` for the parameters."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        auth: Auth | None = None,
        timeout: float = 30,
        max_retries: int = 3,
        user_agent: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if token is not None and auth is not None:
            raise TypeError("pass token or auth, not both")
        self.base_url = base_url.rstrip("/")
        self.auth: Auth | None = TokenAuth(token) if token is not None else auth
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        #: The :class:`requests.Session` every request goes through (mount adapters here).
        self.session = session or requests.Session()
        agent = f"mars-sdk-python/{__version__} python/{platform.python_version()}"
        self.session.headers["User-Agent"] = f"{user_agent} {agent}" if user_agent else agent
        self.session.headers["Accept"] = "application/json"
        self.token_endpoint = TokenEndpoint(self.base_url, session=self.session, timeout=timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, auth={self.auth!r})"

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()

    # -- long-running operations ---------------------------------------------------------

    def wait(
        self,
        operation: Any,
        *,
        timeout: float = 300.0,
        interval: float = 0.5,
        max_interval: float = 5.0,
    ) -> Any:
        """Poll a long-running operation (what a 202 answer returns, or its id) until it
        ends; return it once it has succeeded (its ``result`` is the path of what it made).

        :raises OperationFailed: it failed; the exception's ``problem`` says why.
        :raises MarsTimeoutError: it had not ended after ``timeout`` seconds (it goes on).
        """
        # What a 202 answered: the operation itself, or (a redelivery) what leads to it.
        operation_id = getattr(operation, "operation_id", None) or getattr(
            operation, "id", operation
        )
        deadline = time.monotonic() + timeout
        delay = interval
        while True:
            current = self.operations.get(operation_id=operation_id)  # type: ignore[attr-defined]
            if current.status == "succeeded":
                return current
            if current.status == "failed":
                raise OperationFailed(current)
            if time.monotonic() + delay > deadline:
                raise MarsTimeoutError(
                    f"operation {operation_id} is still {current.status} after {timeout:g} s"
                )
            time.sleep(delay)
            delay = min(max_interval, delay * 2)

    # -- GraphQL -------------------------------------------------------------------------

    def graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Run a GraphQL query or mutation (``/api/v1/graphql``); return its ``data``.

        Sent by POST; a document with a mutation gets an ``Idempotency-Key`` (made up
        unless given), so it is retried safely and done once.

        :raises GraphQLError: the answer has ``errors`` (the document is not valid, a field
            failed, a limit was hit); its ``data`` holds what did succeed.
        :raises MarsError: the request failed as a whole (a token not valid, a rate limit).
        """
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = dict(variables)
        if operation_name is not None:
            body["operationName"] = operation_name
        headers = {"Accept": "application/graphql-response+json, application/json"}
        if idempotency_key is None and _MUTATION.search(_COMMENT.sub("", query)):
            idempotency_key = str(uuid.uuid4())
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        # A query changes nothing, and a mutation has its key: either may be sent again.
        response, request_id = self._send(
            "POST", GRAPHQL_PATH, params=None, body=body, headers=headers, retryable=True
        )
        warn_if_deprecated("graphql", response)
        answer: Any = None
        if response.headers.get("Content-Type", "").startswith(GRAPHQL_MEDIA_TYPES):
            try:
                answer = response.json()
            except ValueError:
                answer = None
        if not isinstance(answer, dict):
            if response.status_code >= 400:
                raise error_from_response(response, request_id)
            raise UnexpectedResponse(
                f"graphql: the answer is not a GraphQL response (HTTP {response.status_code})",
                status=response.status_code,
                request_id=response.headers.get("X-Request-ID") or request_id,
                headers=response.headers,
            )
        errors, data = answer.get("errors"), answer.get("data")
        if errors or not isinstance(data, dict):
            raise GraphQLError(
                list(errors or []),
                data if isinstance(data, dict) else None,
                request_id=response.headers.get("X-Request-ID") or request_id,
                headers=response.headers,
            )
        return data

    # -- the public escape hatch ---------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = UNSET,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> requests.Response:
        """Call any endpoint (``path`` under the base URL), with the client's credentials,
        retries and errors; returns the :class:`requests.Response` of a success.

        A POST gets an ``Idempotency-Key`` (made up unless given), so it may be retried.

        :raises MarsError: for any failure, as the generated methods do.
        """
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/' (under the base URL), not {path!r}")
        if method == "POST" and idempotency_key is None:
            idempotency_key = str(uuid.uuid4())
        all_headers = dict(headers or {})
        if idempotency_key is not None:
            all_headers["Idempotency-Key"] = idempotency_key
        response, request_id = self._send(
            method,
            path,
            params=params,
            body=json,
            headers=all_headers,
            retryable=may_retry(method, idempotency_key=idempotency_key is not None),
        )
        warn_if_deprecated(f"{method} {path}", response)
        if response.status_code >= 400:
            raise error_from_response(response, request_id)
        return response

    # -- used by the generated resources -------------------------------------------------

    def _call(
        self,
        op: Operation,
        parse: Callable[[Any], T],
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        body: Any = UNSET,
        idempotency_key: str | None = None,
        if_match: str | HasETag | None = None,
        if_none_match: T | None = None,
        etag: bool = False,
    ) -> T:
        """Send ``op``; raise its error, or return what ``parse`` makes of its JSON body."""
        sent = {k: str(v) for k, v in (headers or {}).items() if v is not None}
        if op.idempotency_key:
            sent["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        if if_match is not None:
            sent["If-Match"] = etag_value(if_match)
        if if_none_match is not None:
            sent["If-None-Match"] = etag_value(if_none_match)  # type: ignore[arg-type]
        url_path = op.path.format_map({k: quote(v, safe="") for k, v in (path or {}).items()})
        response, request_id = self._send(
            op.method,
            url_path,
            params=query,
            body=body,
            headers=sent,
            retryable=may_retry(op.method, idempotency_key=op.idempotency_key),
        )
        warn_if_deprecated(op.operation_id, response)
        status = response.status_code
        if status == 304 and if_none_match is not None:
            return if_none_match
        if status >= 400:
            raise error_from_response(response, request_id)
        try:
            result = parse(response.json() if response.content else None)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UnexpectedResponse(
                f"{op.operation_id}: cannot read the answer ({type(exc).__name__}: {exc})",
                status=status,
                request_id=response.headers.get("X-Request-ID") or request_id,
                headers=response.headers,
            ) from exc
        if etag:
            result.etag = response.headers.get("ETag")  # type: ignore[attr-defined]
        return result

    def _paginate(
        self,
        op: Operation,
        parse_item: Callable[[Any], T],
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> PageIterator[T]:
        """Fetch the first page of ``op`` now, and the next ones as they are iterated."""
        base = {k: v for k, v in (query or {}).items() if k != "cursor"}

        def parse_page(data: Any) -> Page[T]:
            return Page([parse_item(item) for item in data["items"]], data["next_cursor"])

        def fetch(cursor: str) -> Page[T]:
            return self._call(op, parse_page, path=path, query={**base, "cursor": cursor})

        first = self._call(op, parse_page, path=path, query=query)
        return PageIterator(first, fetch)

    # -- the wire --------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: dict[str, str],
        retryable: bool,
    ) -> tuple[requests.Response, str]:
        """Send a request, retrying what may be retried; return the answer and request id."""
        request_id = headers.setdefault("X-Request-ID", uuid.uuid4().hex)
        url = self.base_url + path
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        data = None
        if body is not UNSET:
            data = json.dumps(_json_value(body), separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        retries = 0
        renewed = False
        waiting_since: float | None = None  # for the first try of a POST still running
        while True:
            if self.auth is not None:
                headers["Authorization"] = self.auth.authorization(self.token_endpoint)
            started = time.monotonic()
            try:
                response = self.session.request(
                    method, url, params=query, data=data, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                error = self._connection_error(method, path, exc, request_id)
                transient = retryable and isinstance(error, MarsConnectionError)
                wait = self.retry_policy.delay(retries) if transient else None
                if wait is None:
                    raise error from exc
                reason = type(exc).__name__
            else:
                status = response.status_code
                log.debug(
                    "%s %s -> %d in %.0f ms (request id %s)",
                    method,
                    path,
                    status,
                    (time.monotonic() - started) * 1000,
                    request_id,
                )
                if status == 401 and not renewed and self.auth is not None:
                    renewed = True
                    if self.auth.renew(self.token_endpoint, rejected=headers["Authorization"]):
                        continue
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if status == 409 and retryable and "Idempotency-Key" in headers:
                    # The first try of this POST is still running (a retry after a timeout):
                    # ask again as told until it is done, for as long as one answer may
                    # take; these waits do not count as retries.
                    if not _key_in_use(response):
                        return response, request_id
                    waiting_since = waiting_since or time.monotonic()
                    wait = retry_after if retry_after is not None else 1.0
                    if time.monotonic() + wait - waiting_since > self.timeout:
                        return response, request_id
                    log.info("%s %s: still in progress; asking again in %.2f s", method, path, wait)
                    time.sleep(wait)
                    continue
                if not retryable or status not in RETRY_STATUSES:
                    return response, request_id
                wait = self.retry_policy.delay(retries, retry_after)
                if wait is None:
                    return response, request_id
                reason = str(status)
            retries += 1
            log.info(
                "%s %s: %s; retry %d of %d in %.2f s (request id %s)",
                method,
                path,
                reason,
                retries,
                self.retry_policy.max_retries,
                wait,
                request_id,
            )
            time.sleep(wait)

    def _connection_error(
        self, method: str, path: str, exc: requests.RequestException, request_id: str
    ) -> MarsError:
        if isinstance(exc, requests.Timeout):
            message = f"{method} {path}: no answer within {self.timeout} s"
            return MarsTimeoutError(message, request_id=request_id)
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            message = f"{method} {path}: the connection failed ({type(exc).__name__})"
            return MarsConnectionError(message, request_id=request_id)
        return MarsError(f"{method} {path}: {type(exc).__name__}", request_id=request_id)
