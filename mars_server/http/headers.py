"""Security headers every response gets, decided in one place.

- ``X-Content-Type-Options: nosniff`` everywhere: a browser never guesses a type.
- ``Cache-Control`` chosen per operation (:func:`cache_control`, the rules are in
  :mod:`mars_server.http.caching`): ``no-store`` on whatever may carry a secret (writes,
  secret-bearing answers, credentialed errors, ``/oauth`` and ``/accounts``), ``private,
  no-store`` on credentialed reads, ``no-cache`` or a short ``public, max-age`` on
  anonymous reads.
- ``Strict-Transport-Security`` when MARS is reached over https (``MARS_PUBLIC_URL``).
- The interactive docs may not be framed: ``frame-ancestors 'none'``.
- ``Vary: Origin`` on every answer whose CORS headers depend on ``Origin``
  (:func:`vary_on_origin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app, g, request

from mars_server.http import caching
from mars_server.http.spec import is_api_path
from mars_server.state import mars_state

if TYPE_CHECKING:
    from flask import Response

HSTS = "max-age=31536000"
DOCS_PATH = "/api/docs"
#: outside the API, what may show a secret or personal data: the OAuth server and pages,
#: and the pages the e-mailed links open.
DOCS_POLICY = "frame-ancestors 'none'"
#: the policy of a page whose forms are answered with redirects that leave MARS (see
#: :func:`allow_form_redirects`)
FORM_REDIRECTS_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
)
#: What a server-rendered page outside the API sends (the OAuth sign-in and consent pages, the
#: pages e-mailed links open, a plugin's pages such as single sign-on's): it works without
#: JavaScript and can never be framed, cached or leak its address through ``Referer``.
PAGE_CSP = f"{FORM_REDIRECTS_CSP}; form-action 'self'"
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


#: the request's flag set by :func:`allow_form_redirects` (the request's own: tests run many
#: requests in one app context, so not ``g``)
FORM_REDIRECTS = "mars.form_redirects"


def allow_form_redirects() -> None:
    """This page's forms are answered with redirects that leave MARS: an OAuth app's redirect
    URI, and wherever that app sends the browser next (a site signing in with MARS as its
    identity provider sends it on to its own website). Browsers check CSP ``form-action``
    against every hop of those redirects, and no page can know them all, so this page sends
    no ``form-action`` (it keeps every other directive; its forms are MARS's own
    templates, with no markup from anyone else)."""
    request.environ[FORM_REDIRECTS] = True


def add_page_headers(response: Response) -> Response:
    """:data:`PAGE_HEADERS` on ``response`` (those it has not set), without ``form-action``
    after :func:`allow_form_redirects`: a page blueprint's ``after_request``."""
    if request.environ.get(FORM_REDIRECTS) and "Content-Security-Policy" not in response.headers:
        response.headers["Content-Security-Policy"] = FORM_REDIRECTS_CSP
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def cache_control(response: Response) -> str | None:
    """The answer's ``Cache-Control`` (``None``: leave the view's), by the rules of
    :mod:`mars_server.http.caching`."""
    path = request.path
    policy = caching.take_declared()
    if policy is not None and policy.no_store:
        return caching.NO_STORE
    # A plugin's hook may find the caller without an Authorization header (a cookie, say).
    credentialed = bool(request.headers.get("Authorization")) or g.get("mars_actor") is not None
    succeeded = response.status_code < 400
    if request.method not in ("GET", "HEAD"):
        writes = is_api_path(path) and request.method != "OPTIONS"
        return caching.NO_STORE if credentialed or writes else None
    if policy is not None and policy.everyone and succeeded:
        return policy.public
    if credentialed:
        # Personal data: the caller's own client may keep it, and revalidates it first.
        api_read = is_api_path(path) and succeeded
        return caching.PRIVATE if api_read else caching.NO_STORE
    if not is_api_path(path) or not succeeded:
        return None
    if policy is not None and policy.public is not None:
        # A shared cache must not answer a request with a token from the anonymous copy.
        response.vary.add("Authorization")
        return policy.public
    return caching.REVALIDATE


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    value = cache_control(response)
    if value is not None:
        # Whatever the view said: the operation's policy, or the rule for its kind.
        headers["Cache-Control"] = value
    if (current_app.config["MARS"]["PUBLIC_URL"] or "").startswith("https://"):
        headers.setdefault("Strict-Transport-Security", HSTS)
    if request.path == DOCS_PATH or request.path.startswith(DOCS_PATH + "/"):
        headers.setdefault("Content-Security-Policy", DOCS_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")
    return response


def vary_on_origin(response: Response) -> Response:
    """``Vary: Origin`` wherever CORS may answer, whatever ``Origin`` was (or whether it was
    sent): a cache must not give one origin's answer, or a refused origin's, to another."""
    if not current_app.config["MARS"]["CORS_ORIGINS"]:
        return response
    declared = mars_state().cors_paths  # the plugins' (mars_cors_paths)
    if request.path.startswith("/api/") or request.path in declared:  # r"/api/*" in create_app
        response.vary.add("Origin")
    return response
