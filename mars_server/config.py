"""Configuration: defaults < the file named by ``MARS_CONFIG`` < ``MARS_*`` environment < mapping.

Core settings are described by :class:`CoreSettingsSchema`; each plugin describes its own
section with the ``mars_settings_schema`` hook, and reads it with :func:`plugin_settings`.
In the environment a plugin setting is ``MARS_<PLUGIN>__<KEY>`` (two underscores), in the
config file a ``[plugins.<name>]`` table, in the mapping ``{"PLUGINS": {name: {...}}}``.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import tomllib
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import marshmallow as ma
from flask import current_app, has_request_context, request

from mars_server.crypto import valid_key
from mars_server.state import mars_state

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

log = logging.getLogger(__name__)

ENV_PREFIX = "MARS_"
#: ``MARS_*`` variables that are not settings but are read elsewhere.
NON_SETTING_ENV = frozenset(
    {"MARS_CONFIG", "MARS_TEST_DATABASE_URL", "MARS_TEST_REDIS_URL", "MARS_TEST_REQUIRE_POSTGRES"}
)
MIN_SECRET_KEY_LENGTH = 32
#: OWASP's argon2id configurations (from 46 MiB x 1 pass to 7 MiB x 5 passes): production
#: refuses a password hash cost below all of them (memory in KiB, memory x passes).
PASSWORD_HASH_FLOOR = (7168, 35840)


class ConfigError(Exception):
    """The configuration cannot start MARS; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class CommaList(ma.fields.List):
    """A list that the environment may give as ``a,b,c``."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return super()._deserialize(value, attr, data, **kwargs)


def _is_key(value: str) -> None:
    # the message never repeats the value: it may be a key with a typo
    if not valid_key(value):
        raise ma.ValidationError(
            "an entry is neither a key from `mars keys generate` nor the word derived"
        )


def _is_rate(value: str) -> None:
    """A rate limit such as ``600/minute``: one rate, in ``limits``' notation."""
    import limits

    try:
        items = limits.parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ma.ValidationError(
            f"{value!r} is not a rate: write N/second, N/minute, N/hour or N/day "
            "(e.g. 600/minute), one rate only"
        )


class CoreSettingsSchema(ma.Schema):
    """Every core setting, its type and default. Names are the part after ``MARS_``."""

    class Meta:
        unknown = ma.RAISE

    ENV = ma.fields.String(
        load_default="production",
        validate=ma.validate.OneOf(["production", "development", "testing"]),
    )
    SECRET_KEY = ma.fields.String(load_default=None, allow_none=True)
    #: The address users reach MARS at: links in e-mails and the OAuth issuer start with it.
    PUBLIC_URL = ma.fields.String(load_default=None, allow_none=True)
    #: The organisation's website: where MARS's pages send people to sign in (after they
    #: confirm their address, after they sign out). Development: the example website.
    WEBSITE_URL = ma.fields.String(load_default=None, allow_none=True)
    #: Who answers for the API: the OpenAPI document's ``info.contact`` (an e-mail address
    #: and a web page, each optional; without either, the contact names the API only).
    API_CONTACT_EMAIL = ma.fields.Email(load_default=None, allow_none=True)
    API_CONTACT_URL = ma.fields.Url(load_default=None, allow_none=True, require_tld=False)
    DATABASE_URL = ma.fields.String(load_default=None, allow_none=True)
    INSTANCE_PATH = ma.fields.String(load_default=None, allow_none=True)
    MAX_CONTENT_LENGTH = ma.fields.Integer(
        load_default=1024 * 1024, validate=ma.validate.Range(min=1024)
    )
    CORS_ORIGINS = CommaList(ma.fields.String(), load_default=list)
    LOG_LEVEL = ma.fields.String(
        load_default="INFO", validate=ma.validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])
    )
    LOG_FORMAT = ma.fields.String(load_default="json", validate=ma.validate.OneOf(["json", "text"]))
    PLUGINS_DISABLED = CommaList(ma.fields.String(), load_default=list)
    PAGE_SIZE_DEFAULT = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1))
    PAGE_SIZE_MAX = ma.fields.Integer(load_default=200, validate=ma.validate.Range(min=1))
    #: How deep a GraphQL operation's fields may nest, and what it may cost (docs/graphql.md)
    GRAPHQL_MAX_DEPTH = ma.fields.Integer(load_default=12, validate=ma.validate.Range(min=2))
    GRAPHQL_MAX_COST = ma.fields.Integer(load_default=20000, validate=ma.validate.Range(min=10))
    IDEMPOTENCY_TTL_SECONDS = ma.fields.Integer(
        load_default=24 * 3600, validate=ma.validate.Range(min=60)
    )
    # MARS's own limits on a request's head (mars_server.http.limits). The URL's stays below
    # the longest request line gunicorn reads (8190 bytes), so MARS, not gunicorn, answers it.
    MAX_URL_LENGTH = ma.fields.Integer(
        load_default=4096, validate=ma.validate.Range(min=256, max=8000)
    )
    MAX_HEADER_FIELDS = ma.fields.Integer(
        load_default=100, validate=ma.validate.Range(min=20, max=10_000)
    )
    MAX_HEADER_FIELD_SIZE = ma.fields.Integer(
        load_default=8192, validate=ma.validate.Range(min=1024, max=60_000)
    )
    SQLITE_BUSY_TIMEOUT_MS = ma.fields.Integer(load_default=5000, validate=ma.validate.Range(min=0))
    DATABASE_POOL_SIZE = ma.fields.Integer(load_default=10, validate=ma.validate.Range(min=1))
    #: PostgreSQL cancels a statement after this long, or after waiting this long for a lock
    #: (0: MARS sets none): a request on a stuck database ends in a 503, never hangs.
    DATABASE_STATEMENT_TIMEOUT_MS = ma.fields.Integer(
        load_default=30_000, validate=ma.validate.Range(min=0)
    )
    DATABASE_LOCK_TIMEOUT_MS = ma.fields.Integer(
        load_default=10_000, validate=ma.validate.Range(min=0)
    )
    PROXY_FIX_HOPS = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0))
    #: The bearer token Prometheus sends to ``GET /metrics``; unset, the endpoint is a 404.
    METRICS_TOKEN = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=[
            ma.validate.Length(min=16, error="must be at least 16 characters"),
            ma.validate.Regexp(r"^[\x21-\x7e]+$", error="must be printable ASCII, no spaces"),
        ],
    )
    #: Redis shared by every instance: rate limits and the cache (docs/deployment.md).
    #: Unset: both live in each process's memory, which suits one process only.
    REDIS_URL = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Regexp(r"^(redis|rediss|unix)://", error="must be a redis:// URL"),
    )
    #: How long a token's check is cached (seconds; 0: not cached). Revocation stays instant:
    #: with REDIS_URL on every instance; without, for the processes sharing one instance
    #: folder (mars_server/auth/token_cache.py).
    TOKEN_CACHE_SECONDS = ma.fields.Integer(
        load_default=60, validate=ma.validate.Range(min=0, max=3600)
    )
    #: argon2id's cost for new password hashes (mars_server.auth.passwords): RFC 9106's
    #: low-memory profile by default. A stored hash with other parameters is rehashed at the
    #: next sign-in. Production refuses less than OWASP's minimum (PASSWORD_HASH_FLOOR).
    PASSWORD_HASH_MEMORY_KIB = ma.fields.Integer(
        load_default=65536, validate=ma.validate.Range(min=8, max=4 * 1024 * 1024)
    )
    PASSWORD_HASH_TIME_COST = ma.fields.Integer(
        load_default=3, validate=ma.validate.Range(min=1, max=100)
    )
    PASSWORD_HASH_PARALLELISM = ma.fields.Integer(
        load_default=4, validate=ma.validate.Range(min=1, max=64)
    )
    #: API rate limits (mars_server.http.ratelimit): per authenticated caller, per address.
    RATELIMIT_ENABLED = ma.fields.Boolean(load_default=True)
    RATELIMIT_DEFAULT = ma.fields.String(load_default="600/minute", validate=_is_rate)
    RATELIMIT_ANONYMOUS = ma.fields.String(load_default="60/minute", validate=_is_rate)
    #: With Redis: the share of a quota (per cent) a process takes at once; 0 counts exactly.
    RATELIMIT_LEASE_PERCENT = ma.fields.Integer(
        load_default=1, validate=ma.validate.Range(min=0, max=10)
    )
    # Mail (mars_server.mail). MAIL_BACKEND and SMTP_PORT get their defaults in _check_mail.
    MAIL_BACKEND = ma.fields.String(
        load_default=None, allow_none=True, validate=ma.validate.OneOf(["smtp", "files"])
    )
    MAIL_FROM = ma.fields.String(load_default="MARS <no-reply@localhost>")
    SMTP_HOST = ma.fields.String(load_default=None, allow_none=True)
    SMTP_PORT = ma.fields.Integer(
        load_default=None, allow_none=True, validate=ma.validate.Range(min=1, max=65535)
    )
    SMTP_SECURITY = ma.fields.String(
        load_default="starttls", validate=ma.validate.OneOf(["starttls", "tls", "none"])
    )
    SMTP_USERNAME = ma.fields.String(load_default=None, allow_none=True)
    SMTP_PASSWORD = ma.fields.String(load_default=None, allow_none=True)
    SMTP_TIMEOUT = ma.fields.Float(
        load_default=10.0, validate=ma.validate.Range(min=0, min_inclusive=False)
    )
    SMTP_CA_FILE = ma.fields.String(load_default=None, allow_none=True)
    # Background jobs (docs/jobs.md).
    JOBS_BACKEND = ma.fields.String(
        load_default="embedded", validate=ma.validate.OneOf(["embedded", "celery"])
    )
    CELERY_BROKER_URL = ma.fields.String(load_default=None, allow_none=True)
    WORKER_CONCURRENCY = ma.fields.Integer(
        load_default=8, validate=ma.validate.Range(min=1, max=256)
    )
    WORKER_POLL_SECONDS = ma.fields.Float(
        load_default=1.0, validate=ma.validate.Range(min=0.01, max=60)
    )
    #: How long a job stays leased to an embedded worker that stops renewing it (it died).
    JOBS_LEASE_SECONDS = ma.fields.Float(
        load_default=60.0, validate=ma.validate.Range(min=0.5, max=3600)
    )
    #: ``mars serve`` runs a worker (embedded backend) or the relay (Celery) in its process.
    SERVE_WITH_WORKER = ma.fields.Boolean(load_default=True)
    EVENTS_RETENTION_DAYS = ma.fields.Integer(load_default=30, validate=ma.validate.Range(min=1))
    JOBS_RETENTION_DAYS = ma.fields.Integer(load_default=7, validate=ma.validate.Range(min=1))
    #: finished long-running operations (``/api/v1/operations``) are kept this long
    OPERATIONS_RETENTION_DAYS = ma.fields.Integer(
        load_default=30, validate=ma.validate.Range(min=1)
    )
    # Backups (docs/recovery.md): scheduled into BACKUP_DIR when it is set.
    BACKUP_DIR = ma.fields.String(load_default=None, allow_none=True)
    BACKUP_EVERY_HOURS = ma.fields.Integer(
        load_default=24, validate=ma.validate.Range(min=1, max=24 * 7)
    )
    BACKUP_KEEP_DAILY = ma.fields.Integer(load_default=7, validate=ma.validate.Range(min=1))
    BACKUP_KEEP_WEEKLY = ma.fields.Integer(load_default=4, validate=ma.validate.Range(min=0))
    #: age public keys (``age1...``) backups are encrypted to; their private keys stay off
    #: the server.
    BACKUP_RECIPIENTS = CommaList(
        ma.fields.String(validate=ma.validate.Regexp(r"^age1[02-9ac-hj-np-z]{58}$")),
        load_default=list,
    )
    #: The keyring of sealed values (docs/privacy.md): Fernet keys from `mars keys generate`,
    #: the first encrypts, all decrypt; ``derived`` is the key derived from SECRET_KEY.
    ENCRYPTION_KEYS = CommaList(
        ma.fields.String(validate=_is_key),
        load_default=list,
    )
    #: Let webhooks reach loopback, private and link-local addresses (development, tests).
    WEBHOOKS_ALLOW_PRIVATE = ma.fields.Boolean(load_default=False)

    @ma.validates_schema
    def _check_celery(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("JOBS_BACKEND") == "celery" and not data.get("CELERY_BROKER_URL"):
            raise ma.ValidationError(
                "is required when JOBS_BACKEND is celery (redis://... or amqp://...)",
                "CELERY_BROKER_URL",
            )

    @ma.validates_schema
    def _check_page_sizes(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("PAGE_SIZE_DEFAULT", 0) > data.get("PAGE_SIZE_MAX", 0):
            raise ma.ValidationError("must not exceed PAGE_SIZE_MAX", "PAGE_SIZE_DEFAULT")


CORE_KEYS = frozenset(CoreSettingsSchema().fields)


@dataclass
class RawConfig:
    """Settings gathered from every source, before validation."""

    core: dict[str, Any] = field(default_factory=dict)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: keys that go to ``app.config`` untouched (Flask's own, extensions').
    passthrough: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _merge_plugin_sections(raw: RawConfig, sections: Mapping[str, Any], where: str) -> None:
    for name, section in sections.items():
        if not isinstance(section, dict):
            raw.problems.append(f"{where}: plugin section {name!r} must be a table")
            continue
        raw.plugins.setdefault(name.lower(), {}).update(
            {key.lower(): value for key, value in section.items()}
        )


def _from_file(raw: RawConfig, path: str) -> None:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raw.problems.append(f"MARS_CONFIG: cannot read {path}: {exc.strerror}")
        return
    except tomllib.TOMLDecodeError as exc:
        raw.problems.append(f"MARS_CONFIG: {path} is not valid TOML: {exc}")
        return
    _merge_plugin_sections(raw, data.pop("plugins", {}), path)
    for key, value in data.items():
        if key.upper() in CORE_KEYS:
            raw.core[key.upper()] = value
        else:
            raw.warnings.append(f"{path}: unknown setting {key!r} ignored")


#: ``MARS_X_FILE`` names a file holding the value of ``MARS_X`` (container and systemd secrets).
FILE_SUFFIX = "_FILE"
#: The most such a file may hold: a secret, a key, a certificate.
MAX_SETTING_FILE = 64 * 1024


def read_setting_file(where: str, path: str, problems: list[str]) -> str | None:
    """The value in the file at ``path`` (one final newline dropped, as editors and ``echo``
    write one), or ``None`` with a problem naming ``where`` and the file, never its content."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SETTING_FILE + 1)
    except OSError as exc:
        problems.append(f"{where}: cannot read {path}: {exc.strerror}")
        return None
    if len(data) > MAX_SETTING_FILE:
        problems.append(f"{where}: {path} holds more than {MAX_SETTING_FILE // 1024} KiB")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{where}: {path} is not UTF-8 text")
        return None
    return text.removesuffix("\n").removesuffix("\r")


def _from_environ(raw: RawConfig, environ: Mapping[str, str]) -> None:
    files: dict[str, tuple[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        key = name[len(ENV_PREFIX) :]
        if "__" in key:
            plugin, _, setting = key.partition("__")
            raw.plugins.setdefault(plugin.lower(), {})[setting.lower()] = value
        elif key in CORE_KEYS:
            raw.core[key] = value
        elif key.endswith(FILE_SUFFIX) and key.removesuffix(FILE_SUFFIX) in CORE_KEYS:
            files[key.removesuffix(FILE_SUFFIX)] = (name, value)
        else:
            raw.warnings.append(f"unknown setting {name} ignored")
    for key, (name, path) in sorted(files.items()):
        if ENV_PREFIX + key in environ:
            raw.problems.append(f"{name}: {ENV_PREFIX}{key} is set too; set one of them")
            continue
        content = read_setting_file(name, path, raw.problems)
        if content is not None:
            raw.core[key] = content


def plugin_setting_files(
    name: str, section: dict[str, Any], fields: Collection[str], problems: list[str]
) -> dict[str, Any]:
    """``section`` with each ``<key>_file`` that plugin ``name`` has no setting of that name
    for, but has ``<key>``, replaced by ``<key>`` read from the file it names
    (``MARS_AUTH__SOME_SECRET_FILE``)."""
    resolved = dict(section)
    for key, path in section.items():
        target = key.removesuffix(FILE_SUFFIX.lower())
        if key == target or key in fields or target not in fields:
            continue
        del resolved[key]
        where = f"plugin {name!r} setting {key!r}"
        if target in section:
            problems.append(f"{where}: {target!r} is set too; set one of them")
            continue
        value = read_setting_file(where, str(path), problems)
        if value is not None:
            resolved[target] = value
    return resolved


def _from_mapping(raw: RawConfig, mapping: Mapping[str, Any]) -> None:
    for key, value in mapping.items():
        if key == "PLUGINS":
            _merge_plugin_sections(raw, value, "create_app(config=...)")
        elif key in CORE_KEYS:
            raw.core[key] = value
        else:
            raw.passthrough[key] = value


def gather(
    config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> RawConfig:
    """Collect the settings from every source, in order of precedence."""
    environ = os.environ if environ is None else environ
    raw = RawConfig()
    if environ.get("MARS_CONFIG"):
        _from_file(raw, environ["MARS_CONFIG"])
    _from_environ(raw, environ)
    _from_mapping(raw, config or {})
    return raw


#: The settings the HTTP server's own limits are derived from (mars_server.ops.gunicorn_conf).
HTTP_LIMIT_KEYS = ("MAX_URL_LENGTH", "MAX_HEADER_FIELDS", "MAX_HEADER_FIELD_SIZE")


def http_limits(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """MARS's own limits on a request's head, read from the same sources as ``create_app``.

    A bad value gives the defaults here: ``create_app`` (and ``mars check``) reports it.
    """
    raw = gather(environ=environ)
    schema = CoreSettingsSchema(only=HTTP_LIMIT_KEYS)
    try:
        limits: dict[str, int] = schema.load(
            {key: value for key, value in raw.core.items() if key in HTTP_LIMIT_KEYS}
        )
    except ma.ValidationError:
        limits = schema.load({})
    return limits


def normalise_database_url(url: str) -> str:
    """Send PostgreSQL through psycopg 3 whatever driver the URL names."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _message(messages: Any) -> str:
    """marshmallow's messages for a setting as one sentence; a list's entries by number."""
    if isinstance(messages, dict):
        return "; ".join(
            f"entry {index + 1}: {_message(value)}" if isinstance(index, int) else _message(value)
            for index, value in sorted(messages.items(), key=lambda item: str(item[0]))
        )
    if isinstance(messages, list):
        return " ".join(_message(message) for message in messages)
    return str(messages)


def validate_core(raw: RawConfig, instance_path: str) -> dict[str, Any]:
    """Validate the core settings, appending every problem to ``raw.problems``."""
    try:
        settings: dict[str, Any] = CoreSettingsSchema().load(raw.core)
    except ma.ValidationError as exc:
        for key, messages in sorted(exc.normalized_messages().items()):
            raw.problems.append(f"MARS_{key}: {_message(messages)}")
        # Go on with the defaults in place of the bad values, to report every other problem.
        good = {key: value for key, value in raw.core.items() if key not in exc.messages}
        try:
            settings = CoreSettingsSchema().load(good)
        except ma.ValidationError:
            return {}

    settings["INSTANCE_PATH"] = settings["INSTANCE_PATH"] or instance_path
    url = settings["DATABASE_URL"] or f"sqlite:///{Path(settings['INSTANCE_PATH'], 'mars.db')}"
    settings["DATABASE_URL"] = normalise_database_url(url)
    if not settings["DATABASE_URL"].startswith(("sqlite://", "postgresql+psycopg://")):
        raw.problems.append("MARS_DATABASE_URL: only sqlite:// and postgresql:// are supported")

    if not settings["SECRET_KEY"]:
        if settings["ENV"] == "production":
            raw.problems.append(
                "MARS_SECRET_KEY: required in production (32+ random characters, e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        else:
            settings["SECRET_KEY"] = _development_secret(settings["INSTANCE_PATH"])
    elif settings["ENV"] == "production" and len(settings["SECRET_KEY"]) < MIN_SECRET_KEY_LENGTH:
        raw.problems.append(
            f"MARS_SECRET_KEY: must be at least {MIN_SECRET_KEY_LENGTH} characters in production"
        )

    _check_public_url(settings, raw)
    _check_password_hashing(settings, raw)
    if "*" in settings["CORS_ORIGINS"]:
        raw.problems.append(
            "MARS_CORS_ORIGINS: list the website's origins; '*' is refused "
            "because MARS answers CORS requests with credentials"
        )
    for origin in settings["CORS_ORIGINS"]:
        try:
            parts = urlsplit(origin)
        except ValueError:
            parts = urlsplit("invalid:")
        # flask-cors reads regex characters as a pattern: "https://.*" would let any site in.
        if origin != "*" and (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path
            or parts.query
            or parts.fragment
            or any(char in origin for char in "*\\?[](){}^$|+")
        ):
            raw.problems.append(
                f"MARS_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], no path)"
            )
    _check_mail(settings, raw)
    return settings


def _check_public_url(settings: dict[str, Any], raw: RawConfig) -> None:
    """``PUBLIC_URL``: required in production, where a request's ``Host`` header (which
    anyone can set) must never decide where the links in a password-reset mail point."""
    url = (settings["PUBLIC_URL"] or "").strip().rstrip("/") or None
    settings["PUBLIC_URL"] = url
    if url is None:
        if settings["ENV"] == "production":
            raw.problems.append(
                "MARS_PUBLIC_URL: required in production: the address users reach MARS at, "
                "e.g. https://mars.example.org (links in e-mails and the OAuth issuer use it)"
            )
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = urlsplit("invalid:")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raw.problems.append(
            f"MARS_PUBLIC_URL: {url!r} is not an http(s) address (scheme://host[:port][/path])"
        )
    elif settings["ENV"] == "production" and parts.scheme != "https":
        raw.problems.append("MARS_PUBLIC_URL: must be https:// in production")


def _check_password_hashing(settings: dict[str, Any], raw: RawConfig) -> None:
    memory, passes = settings["PASSWORD_HASH_MEMORY_KIB"], settings["PASSWORD_HASH_TIME_COST"]
    if settings["PASSWORD_HASH_PARALLELISM"] * 8 > memory:
        raw.problems.append(
            "MARS_PASSWORD_HASH_MEMORY_KIB: argon2 needs at least 8 KiB per lane "
            f"(MARS_PASSWORD_HASH_PARALLELISM={settings['PASSWORD_HASH_PARALLELISM']})"
        )
    min_memory, min_product = PASSWORD_HASH_FLOOR
    if settings["ENV"] == "production" and (memory < min_memory or memory * passes < min_product):
        raw.problems.append(
            f"MARS_PASSWORD_HASH_MEMORY_KIB={memory} with MARS_PASSWORD_HASH_TIME_COST={passes}"
            f" is below OWASP's minimum for argon2id in production: at least {min_memory} KiB"
            f", and memory x passes at least {min_product} (e.g. 19456 KiB and 2 passes)"
        )


def _check_mail(settings: dict[str, Any], raw: RawConfig) -> None:
    """Fill the mail defaults that depend on other settings; a mail that cannot go is a problem.

    Development and testing write ``.eml`` files; production sends, so it needs a server.
    """
    for key in ("SMTP_HOST", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_CA_FILE"):
        settings[key] = settings[key] or None  # an empty variable means "not set"
    if settings["MAIL_BACKEND"] is None:
        settings["MAIL_BACKEND"] = "smtp" if settings["ENV"] == "production" else "files"
    if settings["SMTP_PORT"] is None:
        settings["SMTP_PORT"] = 465 if settings["SMTP_SECURITY"] == "tls" else 587
    if settings["MAIL_BACKEND"] == "smtp" and not settings["SMTP_HOST"]:
        raw.problems.append(
            "MARS_SMTP_HOST: required when MARS_MAIL_BACKEND is smtp (the default in "
            "production); or set MARS_MAIL_BACKEND=files to write mails to the instance folder"
        )
    mail_from = settings["MAIL_FROM"]
    addresses = getaddresses([mail_from])
    if len(addresses) != 1 or "@" not in addresses[0][1] or {"\r", "\n"} & set(mail_from):
        raw.problems.append("MARS_MAIL_FROM: must be one address, e.g. 'MARS <mars@example.org>'")
    if (settings["SMTP_USERNAME"] is None) != (settings["SMTP_PASSWORD"] is None):
        raw.problems.append("MARS_SMTP_USERNAME and MARS_SMTP_PASSWORD: set both or neither")
    elif settings["SMTP_USERNAME"] and settings["SMTP_SECURITY"] == "none":
        raw.warnings.append("MARS_SMTP_SECURITY is none: the SMTP password crosses unencrypted")
    if settings["SMTP_CA_FILE"] and not Path(settings["SMTP_CA_FILE"]).is_file():
        raw.problems.append(f"MARS_SMTP_CA_FILE: {settings['SMTP_CA_FILE']} is not a file")


def _development_secret(instance_path: str) -> str:
    """A per-checkout key kept in the instance folder, so cursors survive restarts.

    Created owner-only and exclusively: two processes starting together agree on one key.
    """
    path = Path(instance_path, "secret_key")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            key = path.read_text(encoding="ascii").strip()
            if key:
                return key
            time.sleep(0.01)
        raise
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(key)
    return key


def plugin_settings(name: str) -> dict[str, Any]:
    """Return the validated settings section of plugin ``name`` for the current app."""
    sections: dict[str, dict[str, Any]] = mars_state().plugin_settings
    return sections.get(name, {})


#: Where ``mars serve`` listens by default: the public address of a development MARS.
DEVELOPMENT_URL = "http://127.0.0.1:5000"


def public_url(path: str = "") -> str:
    """``path`` as an absolute address users can open: after ``MARS_PUBLIC_URL``.

    Without ``MARS_PUBLIC_URL`` (development and tests only: production requires it), the
    address of the current request, or ``mars serve``'s outside one.
    """
    base = current_app.config["MARS"]["PUBLIC_URL"]
    if base is None:
        base = request.host_url.rstrip("/") if has_request_context() else DEVELOPMENT_URL
    return base + "/" + path.lstrip("/") if path else base
