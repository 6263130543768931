"""Why a webhook attempt got no answer, in one sentence for the endpoint's owner.

The delivery log shows the sentence and the worker logs it. It starts with what failed — the
DNS lookup, the connection, TLS, or the wait for an answer — so the owner knows where to look;
it names the host and port, never the URL, whose path or query may hold a token.

urllib3 is no help in telling these apart: since 2.0 its ``NewConnectionError`` and
``NameResolutionError`` are subclasses of ``ConnectTimeoutError``, and a TLS handshake that
times out is a ``ReadTimeoutError``. So the transport records which stage an attempt had
reached (:data:`RESOLVE` ... :data:`ANSWER`), and :func:`describe` reads the causes the
error carries (``socket.gaierror``, ``ConnectionRefusedError``, ``ssl.SSLError``...).
"""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import TypeVar

from urllib3.exceptions import NameResolutionError, ReadTimeoutError

#: Looking the host name up.
RESOLVE = "resolve"
#: Opening the TCP connection.
CONNECT = "connect"
#: The TLS handshake of an https:// URL.
TLS = "tls"
#: Sending the request and waiting for the answer's status and headers.
ANSWER = "answer"

MAX_LENGTH = 500

E = TypeVar("E", bound=BaseException)


def describe(
    error: BaseException, *, stage: str, timed_out: bool, host: str, port: int, timeout: float
) -> str:
    """What went wrong, for the delivery log.

    :param stage: how far the attempt got (:data:`RESOLVE`, :data:`CONNECT`, :data:`TLS`,
        :data:`ANSWER`).
    :param timed_out: whether the attempt's deadline passed (its socket was shut then, so
        ``error`` may be any consequence of that).
    """
    where = f"{host} port {port}"
    within = f"within {timeout:g} s"
    if _find(error, NameResolutionError) or _find(error, socket.gaierror):
        lookup = _find(error, socket.gaierror)
        reason = f" ({lookup.strerror})" if lookup is not None and lookup.strerror else ""
        return _cut(f"DNS failure: {host} could not be resolved{reason}.")
    if timed_out or _is_timeout(error):
        if stage == RESOLVE:
            return f"DNS timeout: {host} was not resolved {within}."
        if stage == CONNECT:
            return f"Connect timeout: {where} did not accept a connection {within}."
        if stage == TLS:
            return f"TLS handshake timeout: {where} did not complete the handshake {within}."
        return f"Read timeout: no answer from {where} {within}."
    certificate = _find(error, ssl.SSLCertVerificationError)
    if certificate is not None:
        reason = certificate.verify_message or certificate.reason or "not trusted"
        return _cut(f"TLS failure: the certificate of {host} was not accepted ({reason}).")
    tls = _find(error, ssl.SSLError)
    if tls is not None or stage == TLS:
        return _cut(f"TLS failure: the handshake with {where} failed ({_tls_reason(tls, error)}).")
    if _find(error, ConnectionRefusedError):
        return f"Connection refused: nothing accepts connections on {where}."
    failure = _find(error, OSError)
    if stage in (RESOLVE, CONNECT):
        reason = _os_reason(failure) if failure is not None else type(error).__name__
        return _cut(f"Connection failed: could not connect to {where} ({reason}).")
    if _find(error, http.client.RemoteDisconnected):
        return f"Connection failed: {where} closed the connection without answering."
    if _find(error, ConnectionResetError):
        return f"Connection failed: {where} reset the connection before answering."
    if failure is not None or _find(error, http.client.HTTPException):
        cause = failure or _find(error, http.client.HTTPException)
        return _cut(f"Connection failed: {where}: {_os_reason(cause)}.")
    return f"The request failed: {type(error).__name__}."


def _find(error: BaseException, kind: type[E]) -> E | None:
    """``error`` or the first error it wraps (causes, context, urllib3's ``args``) of ``kind``."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def _is_timeout(error: BaseException) -> bool:
    # Not urllib3's ConnectTimeoutError: its DNS and connection errors are subclasses.
    return _find(error, ReadTimeoutError) is not None or _find(error, TimeoutError) is not None


def _tls_reason(tls: ssl.SSLError | None, error: BaseException) -> str:
    if tls is None:
        failure = _find(error, OSError)
        return _os_reason(failure) if failure is not None else type(error).__name__
    if isinstance(tls, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "the connection was closed"
    reason = (tls.reason or "").replace("_", " ").lower() or str(tls)
    if tls.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"):
        reason += "; the server on this port may not speak TLS"
    return reason


def _os_reason(error: BaseException | None) -> str:
    if error is None:
        return "no details"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 1] + "…"
