"""The gunicorn settings MARS ships: ``gunicorn -c python:mars_server.ops.gunicorn_conf``.

gunicorn answers a request it refuses to parse with an HTML page of its own, before MARS sees
it, and it has no hook to change that page. So its limits are set above MARS's own
(``MARS_MAX_URL_LENGTH``, ``MARS_MAX_HEADER_FIELDS``, ``MARS_MAX_HEADER_FIELD_SIZE``): a
request over MARS's limits reaches MARS and gets a problem+json answer; only one far beyond
them, or one that is not HTTP, is refused by gunicorn (docs/http.md lists those answers).

Other settings (``-w``, ``-b``, ...) come from the command line or ``GUNICORN_CMD_ARGS``;
they win over this file.
"""

from __future__ import annotations

from mars_server.config import http_limits

#: gunicorn's own caps: it refuses larger values or treats them as "unlimited".
GUNICORN_MAX_REQUEST_LINE = 8190
GUNICORN_MAX_HEADER_FIELDS = 32768
#: How far gunicorn's limits sit above MARS's: what lies between is answered by MARS.
HEADROOM = 2

_limits = http_limits()

wsgi_app = "mars_server:create_app()"
# The request line is the method, the URL and the version; MARS_MAX_URL_LENGTH stays below.
limit_request_line = GUNICORN_MAX_REQUEST_LINE
limit_request_fields = min(HEADROOM * _limits["MAX_HEADER_FIELDS"], GUNICORN_MAX_HEADER_FIELDS)
limit_request_field_size = HEADROOM * _limits["MAX_HEADER_FIELD_SIZE"]
