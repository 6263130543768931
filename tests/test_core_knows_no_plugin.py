"""What the core once knew of its builtin plugins, now the plugins' own through hooks: the
OpenAPI document's security schemes and ``webhooks`` section, routes outside ``/api/v1``,
CORS outside ``/api``, and the account mails. A fake plugin uses each hook as auth and
webhooks do."""

from __future__ import annotations

import flask
import pytest

from mars_server import PluginInfo, hookimpl
from mars_server.hookspecs import SecurityScheme
from mars_server.mail import render_mail
from mars_server.mail.rendering import CORE_TEMPLATES
from mars_server.plugins import PluginError
from tests import fakes

ORIGIN = "https://web.example"
PORTAL_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "A token of the portal's own sign-in (`portal_...`).",
}

portal_pages = flask.Blueprint("portal", __name__)


@portal_pages.post("/portal/token")
def portal_token() -> flask.Response:
    return flask.jsonify(access_token="portal_abc")


@portal_pages.get("/portal/sign-in")
def portal_sign_in() -> str:
    return "<p>Sign in to the portal</p>"


sneaky_pages = flask.Blueprint("sneaky", __name__)


@sneaky_pages.get("/api/v1/sneaky")
def sneaky() -> str:
    return "not an operation"


class Portal:
    """A sign-in plugin: its own token (a security scheme), its token endpoint and sign-in
    page outside the API (the endpoint open to browser apps), a note in the document."""

    MARS_PLUGIN = PluginInfo(name="portal", version="1.0", requires=">=0.1")

    def __init__(self) -> None:
        self.blueprints: list[flask.Blueprint] = [portal_pages]
        self.cors_paths: list[str] = ["/portal/token"]
        self.scheme = SecurityScheme("portalToken", PORTAL_SCHEME)
        self.scopes_offered: dict[str, str] = {}
        self.event_types_seen: list[str] = []
        self.paths_seen: list[str] = []

    @hookimpl
    def mars_security_schemes(self, scopes: dict[str, str]) -> list[SecurityScheme]:
        self.scopes_offered = dict(scopes)
        return [self.scheme]

    @hookimpl
    def mars_openapi(self, spec: object, event_types: dict[str, object]) -> None:
        self.event_types_seen = sorted(event_types)
        self.paths_seen = sorted(spec.to_dict().get("paths", {}))  # type: ignore[attr-defined]
        spec.options["x-portal"] = {"sign-in": "/portal/sign-in"}  # type: ignore[attr-defined]

    @hookimpl
    def mars_blueprints(self) -> list[flask.Blueprint]:
        return self.blueprints

    @hookimpl
    def mars_cors_paths(self) -> list[str]:
        return self.cors_paths


class Mimic:
    """A plugin whose mail folder has a ``verify_email`` of its own, and a mail of its own."""

    MARS_PLUGIN = PluginInfo(name="mimic", version="1.0", requires=">=0.1")
    folder: object = None

    @hookimpl
    def mars_app_ready(self, app: flask.Flask) -> None:
        from mars_server.mail import register_template_folder

        register_template_folder(app, str(self.folder))


@pytest.fixture
def install_here(install_plugins, monkeypatch):
    """conftest's ``install_plugins``, for the fakes of this module: each is lent to
    ``tests.fakes`` for the test, where the fake entry point finds it."""

    def install(**plugins: object) -> None:
        for name, plugin in plugins.items():
            monkeypatch.setattr(fakes, f"lent_{name}", plugin, raising=False)
        install_plugins(**{name: f"lent_{name}" for name in plugins})

    return install


@pytest.fixture
def portal(install_here):
    plugin = Portal()
    install_here(portal=plugin)
    return plugin


def document(app: flask.Flask) -> dict:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


# -- security schemes ----------------------------------------------------------------------


def test_auth_contributes_the_security_schemes(app):
    spec = document(app)
    schemes = spec["components"]["securitySchemes"]
    assert list(schemes) == ["oauth2", "personalAccessToken"]
    flows = schemes["oauth2"]["flows"]
    code = flows["authorizationCode"]
    assert (code["authorizationUrl"], code["tokenUrl"], code["refreshUrl"]) == (
        "/oauth/authorize",
        "/oauth/token",
        "/oauth/token",
    )
    assert flows["clientCredentials"]["tokenUrl"] == "/oauth/token"
    declared = set(app.extensions["mars"].scopes)
    assert set(code["scopes"]) == set(flows["clientCredentials"]["scopes"]) == declared
    assert {"projects:read", "account:write", "webhooks:read"} <= declared
    pat = schemes["personalAccessToken"]
    assert (pat["type"], pat["scheme"]) == ("http", "bearer")
    assert "`mars_pat_...`" in pat["description"]
    # An operation that needs a token names both, each with its scopes.
    assert spec["paths"]["/api/v1/me/tokens"]["post"]["security"] == [
        {"oauth2": ["account:write"]},
        {"personalAccessToken": []},
    ]
    assert "x-mars-any-credential" not in str(spec["paths"])


def test_hook_mars_security_schemes(portal, make_app):
    spec = document(make_app())
    schemes = spec["components"]["securitySchemes"]
    assert list(schemes) == ["oauth2", "personalAccessToken", "portalToken"]
    assert schemes["portalToken"] == PORTAL_SCHEME
    assert set(portal.scopes_offered) == set(
        schemes["oauth2"]["flows"]["clientCredentials"]["scopes"]
    )
    projects = spec["paths"]["/api/v1/projects"]
    # Every guarded operation accepts the new credential after MARS's (a bearer token: the
    # scopes are those listed under oauth2).
    assert projects["post"]["security"] == [
        {"oauth2": ["projects:write"]},
        {"personalAccessToken": []},
        {"portalToken": []},
    ]
    assert projects["get"]["security"][0] == {}  # anonymous callers still welcome
    assert {"portalToken": []} in projects["get"]["security"]
    assert spec["paths"]["/api/v1/meta"]["get"]["security"] == []  # open operations stay open


def test_a_security_scheme_contributed_twice_stops_start_up(portal, make_app):
    portal.scheme = SecurityScheme("personalAccessToken", PORTAL_SCHEME)
    with pytest.raises(PluginError, match="security schemes declared twice: personalAccessToken"):
        make_app()


def test_an_operation_needing_a_token_needs_a_security_scheme():
    from mars_server.http import Blueprint
    from mars_server.http.spec import MarsApi, MarsSpecPlugin, SpecError, smorest_config

    blp = Blueprint("things", __name__, url_prefix="/things")

    @blp.route("")
    @blp.requires("things:read")
    @blp.doc(operationId="list_things")
    def things() -> str:
        """List things

        Every thing there is.
        """
        return ""

    app = flask.Flask(__name__)
    app.config.update(smorest_config("0.1.0"))
    plugin = MarsSpecPlugin({"things:read": "See things."}, security_schemes=[])
    api = MarsApi(app, spec_kwargs={"extra_plugins": [plugin]})
    with pytest.raises(SpecError, match="GET /things: requires a credential, but no plugin"):
        api.register_blueprint(blp)


# -- the document's other sections ------------------------------------------------------------


def test_hook_mars_openapi(portal, make_app):
    spec = document(make_app())
    assert spec["x-portal"] == {"sign-in": "/portal/sign-in"}
    assert "project.created" in portal.event_types_seen  # every plugin's event types
    assert "webhook.endpoint_disabled" in portal.event_types_seen
    assert portal.paths_seen == []  # before the operations: they may refer to what it adds
    # The builtin webhooks plugin's contribution: every event type, as delivered.
    created = spec["webhooks"]["project.created"]["post"]
    assert created["operationId"] == "webhook_project_created"
    assert created["x-mars-scope"] == "projects:read"
    ref = created["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/WebhookProjectCreated"
    assert {p["name"] for p in created["parameters"]} == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }


def test_without_the_webhooks_plugin_the_document_has_no_webhooks(make_app):
    spec = document(make_app(PLUGINS_DISABLED=["webhooks"]))
    assert "webhooks" not in spec
    assert not [name for name in spec["components"]["schemas"] if name.startswith("Webhook")]
    assert not [path for path in spec["paths"] if path.startswith("/api/v1/webhooks")]
    # What the other plugins contribute is still there.
    assert list(spec["components"]["securitySchemes"]) == ["oauth2", "personalAccessToken"]
    assert "/api/v1/projects" in spec["paths"]


# -- routes outside /api/v1 ------------------------------------------------------------------


def test_hook_mars_blueprints(portal, make_app):
    client = make_app().test_client()
    page = client.get("/portal/sign-in")
    assert page.status_code == 200
    assert page.get_data(as_text=True) == "<p>Sign in to the portal</p>"
    assert page.headers["X-Content-Type-Options"] == "nosniff"  # the security headers
    assert client.post("/portal/token").json == {"access_token": "portal_abc"}
    spec = client.get("/api/v1/openapi.json").json
    assert not [path for path in spec["paths"] if path.startswith("/portal")]
    # The builtin auth plugin mounts its OAuth endpoints and pages the same way.
    metadata = client.get("/.well-known/oauth-authorization-server")
    assert metadata.status_code == 200
    assert metadata.json["token_endpoint"].endswith("/oauth/token")
    for page in ("/oauth/authorize", "/accounts/verify"):  # the pages, without their query
        response = client.get(page)
        assert (response.status_code, response.mimetype) == (400, "text/html"), page


def test_a_route_under_api_from_mars_blueprints_stops_start_up(portal, make_app):
    portal.blueprints = [portal_pages, sneaky_pages]
    with pytest.raises(
        PluginError, match=r"plugin 'portal': blueprint 'sneaky' mounts /api/v1/sneaky under /api"
    ):
        make_app()


def test_a_blueprint_name_taken_stops_start_up(portal, make_app):
    portal.blueprints = [flask.Blueprint("oauth", __name__)]  # auth's is called so
    with pytest.raises(PluginError, match="plugin 'portal': blueprint 'oauth'"):
        make_app()


# -- CORS outside /api --------------------------------------------------------------------------


def cors_grant(client, method: str, path: str, origin: str = ORIGIN) -> str | None:
    """What ``origin`` is granted on ``path``: by the request itself and by its preflight
    (they must agree)."""
    headers = {"Origin": origin}
    response = client.open(path, method=method, headers=headers)
    preflight = client.options(path, headers=headers | {"Access-Control-Request-Method": method})
    granted = response.headers.get("Access-Control-Allow-Origin")
    assert preflight.headers.get("Access-Control-Allow-Origin") == granted, path
    return granted


def test_hook_mars_cors_paths(portal, make_app):
    client = make_app(CORS_ORIGINS=[ORIGIN]).test_client()
    assert cors_grant(client, "POST", "/portal/token") == ORIGIN
    assert cors_grant(client, "POST", "/portal/token", "https://evil.example") is None
    assert cors_grant(client, "GET", "/portal/sign-in") is None  # not declared: a page
    response = client.post("/portal/token", headers={"Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    # A cache keeps answers apart by Origin, whatever the request sent (or did not).
    for origin in ({"Origin": ORIGIN}, {"Origin": "https://evil.example"}, {}):
        assert "Origin" in client.post("/portal/token", headers=origin).vary, origin
    assert "Origin" not in client.get("/portal/sign-in").vary
    # Without MARS_CORS_ORIGINS, nobody is granted anything.
    closed = make_app().test_client()
    assert cors_grant(closed, "POST", "/portal/token") is None


def test_auth_declares_its_cors_paths(make_app):
    app = make_app(CORS_ORIGINS=[ORIGIN])
    assert app.extensions["mars"].cors_paths == [
        "/oauth/token",
        "/oauth/revoke",
        "/.well-known/oauth-authorization-server",
    ]
    client = app.test_client()
    assert cors_grant(client, "POST", "/oauth/token") == ORIGIN
    assert cors_grant(client, "POST", "/oauth/revoke") == ORIGIN
    assert cors_grant(client, "GET", "/.well-known/oauth-authorization-server") == ORIGIN
    # The pages a person signs in on are never open to another origin.
    assert cors_grant(client, "GET", "/oauth/authorize") is None
    assert cors_grant(client, "GET", "/accounts/verify") is None
    assert cors_grant(client, "POST", "/oauth/introspect") is None


@pytest.mark.parametrize("path", ["portal/token", "/portal/*", "/portal/(token)", "/a b", ""])
def test_a_cors_path_that_is_no_exact_path_stops_start_up(portal, make_app, path):
    portal.cors_paths = [path]
    with pytest.raises(PluginError, match=r"plugin 'portal': CORS path .* is not an exact path"):
        make_app(CORS_ORIGINS=[ORIGIN])


def test_a_fake_plugin_adds_a_route_a_cors_path_and_a_security_scheme(portal, make_app):
    app = make_app(CORS_ORIGINS=[ORIGIN])
    client = app.test_client()
    spec = client.get("/api/v1/openapi.json").json
    assert "portalToken" in spec["components"]["securitySchemes"]
    assert client.post("/portal/token", headers={"Origin": ORIGIN}).status_code == 200
    assert cors_grant(client, "POST", "/portal/token") == ORIGIN
    assert app.extensions["mars"].cors_paths[-1] == "/portal/token"


# -- the account mails ---------------------------------------------------------------------


def test_the_account_mails_are_the_auth_plugins(app):
    assert sorted(path.name for path in CORE_TEMPLATES.iterdir()) == [
        "_button.html",
        "_layout.html",
    ]
    with app.app_context():
        mail = render_mail(
            "reset_password", display_name="Ada", reset_url="https://x/r", expires_in_minutes=30
        )
    assert mail.subject == "Reset your MARS password"
    assert "MARS" in mail.html  # the core's _layout.html, extended by auth's template
    assert "https://x/r" in mail.text


def test_no_plugin_replaces_an_account_mail(install_here, make_app, tmp_path):
    folder = tmp_path / "mimic_mail"
    folder.mkdir()
    (folder / "verify_email.subject.txt").write_text("Your account is locked, log in here\n")
    (folder / "verify_email.txt").write_text("Phish {{ verify_url }}\n")
    (folder / "mimic_hello.subject.txt").write_text("Hello from mimic\n")
    (folder / "mimic_hello.txt").write_text("Hello {{ name }}.\n")
    mimic = Mimic()
    mimic.folder = folder
    install_here(mimic=mimic)
    app = make_app()
    with app.app_context():
        verify = render_mail("verify_email", display_name="A", verify_url="u", expires_in_hours=2)
        own = render_mail("mimic_hello", name="Ada")
    assert verify.subject == "Confirm your e-mail address for MARS"
    assert "Phish" not in verify.text
    assert (own.subject, own.text) == ("Hello from mimic", "Hello Ada.\n")
