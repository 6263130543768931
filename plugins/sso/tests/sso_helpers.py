"""What the single sign-on tests share: the identity providers' clients and the website's
sign-in."""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import socket
from html import unescape
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

if TYPE_CHECKING:
    from pathlib import Path

PASSWORD = "correct horse battery staple"
IDP_PERSON = "ada@corp.example"
#: the SAML identity provider's person: an address of no provider's domains
SAML_PERSON = "ada@saml.example"
WEBSITE_CALLBACK = "https://www.example.org/callback"
SP_BASE = "http://localhost"  # the Flask test client's address for MARS under test
SAML_IDP_ENTITY = "https://idp.corp.example/saml"
SAML_IDP_SSO = "https://idp.corp.example/saml/sso"


# --- The OpenID provider: another MARS ---------------------------------------------------------


class OpenIDProvider:
    def __init__(self, app, url, client_id, client_secret):
        self.app, self.url = app, url
        self.client_id, self.client_secret = client_id, client_secret

    def sign_in(self, authorize_url, email=IDP_PERSON, password=PASSWORD):
        """A person's browser at the provider: sign in, allow; returns where it is sent back."""
        browser = requests.Session()
        page = browser.get(authorize_url, allow_redirects=False)
        if 'value="sign_in"' in page.text:
            signed = browser.post(
                page.url,
                data={
                    "csrf_token": csrf_of(page.text),
                    "action": "sign_in",
                    "email": email,
                    "password": password,
                },
                allow_redirects=False,
            )
            assert signed.status_code == 303, signed.text
            page = browser.get(authorize_url, allow_redirects=False)
        if page.status_code == 200 and 'value="approve"' in page.text:
            page = browser.post(
                authorize_url,
                data={"csrf_token": csrf_of(page.text), "action": "approve"},
                allow_redirects=False,
            )
        assert page.status_code in (302, 303), page.text
        return page.headers["Location"]


def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- The SAML identity provider: pysaml2 ---------------------------------------------------------


def _key_and_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = folder / f"{name}.key", folder / f"{name}.crt"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def _idp_config(folder: Path, sp_metadata: list[str]) -> dict:
    key_file, cert_file = folder / "idp.key", folder / "idp.crt"
    if not key_file.exists():
        _key_and_certificate(folder, "idp")
    return {
        "entityid": SAML_IDP_ENTITY,
        "key_file": str(key_file),
        "cert_file": str(cert_file),
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "metadata": {"inline": sp_metadata} if sp_metadata else {},
        "service": {
            "idp": {
                "endpoints": {"single_sign_on_service": [(SAML_IDP_SSO, BINDING_HTTP_REDIRECT)]},
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                "policy": {"default": {"lifetime": {"minutes": 5}, "entity_categories": []}},
            }
        },
    }


class SamlIdentityProvider:
    """pysaml2's identity provider: reads MARS's AuthnRequest, answers with an assertion."""

    def __init__(self, folder: Path, config: dict):
        idp_config = IdPConfig()
        idp_config.load(config)
        self.server = Server(config=idp_config)

    def request_of(self, location: str):
        """The AuthnRequest MARS sent the browser with (HTTP-Redirect binding)."""
        query = parse_qs(urlsplit(location).query)
        request = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        return request.message, query["RelayState"][0]

    def answer(
        self,
        request,
        *,
        email=SAML_PERSON,
        subject="ada-0001",
        groups=("staff",),
        audience=None,
        sign=True,
        destination=None,
        sha1=False,
        name_id_format=NAMEID_FORMAT_PERSISTENT,
        response_destination=True,
    ) -> str:
        """A SAMLResponse (base64, for the HTTP-POST binding) to ``request`` (None: to
        nobody's request, IdP-initiated). ``response_destination=False`` takes the
        Response's (unsigned) Destination out, leaving the assertion's Recipient."""
        identity = {"mail": [email], "displayName": ["Ada Lovelace"], "groups": list(groups)}
        name_id = NameID(format=name_id_format, text=subject)
        acs = destination or (
            request.assertion_consumer_service_url if request is not None else None
        )
        response = self.server.create_authn_response(
            identity,
            in_response_to=request.id if request is not None else None,
            destination=acs,
            sp_entity_id=audience or (request.issuer.text if request is not None else None),
            name_id=name_id,
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_assertion=sign,
            sign_response=False,
            sign_alg=SIG_RSA_SHA1 if sha1 else SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA1 if sha1 else DIGEST_SHA256,
        )
        xml = str(response)
        if not response_destination:
            xml = re.sub(r' Destination="[^"]*"', "", xml, count=1)
        return base64.b64encode(xml.encode()).decode()


# --- MARS under test, signing in with both -------------------------------------------------------


def provider_settings(openid_provider, saml_idp_metadata, **changes):
    _, idp_xml = saml_idp_metadata
    corp = {
        "name": "corp",
        "kind": "oidc",
        "label": "Sign in with Corp",
        "issuer": openid_provider.url,
        "client_id": openid_provider.client_id,
        "client_secret": openid_provider.client_secret,
        "domains": ["corp.example"],
        "roles": [{"claim": "email", "value": "grace@corp.example", "role": "admin"}],
    }
    saml = {
        "name": "corp-saml",
        "kind": "saml",
        "label": "Sign in with Corp (SAML)",
        "idp_metadata": idp_xml,
        "trust_email": True,
        "roles": [{"claim": "groups", "value": "mars-admins", "role": "admin"}],
    }
    # The same identity provider, for the assertions it sends unasked (IdP-initiated).
    unasked = saml | {
        "name": "corp-saml-unasked",
        "label": "Corp unasked",
        "allow_idp_initiated": True,
    }
    return {"providers": [corp, saml, unasked]} | changes


def website_sign_in_url(client_id):
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": WEBSITE_CALLBACK,
        "scope": "account:read",
        "state": "website-state",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    return "/oauth/authorize?" + urlencode(params)


def option_url(page_html: str, label: str) -> str:
    """The address of the sign-in page's button saying ``label``."""
    for href, text in re.findall(
        r'<a class="button primary" href="([^"]+)">([^<]+)</a>', page_html
    ):
        if unescape(text) == label:
            return unescape(href)
    raise AssertionError(f"no button {label!r} on the sign-in page")
