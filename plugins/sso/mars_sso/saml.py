"""MARS as a SAML 2.0 service provider, with pysaml2 (which runs Debian's ``xmlsec1`` to check
XML signatures).

What an assertion must be to sign anyone in: signed by the identity provider's key from its
metadata, for MARS (audience), sent to MARS's assertion consumer service (recipient and
destination), within its validity (give or take ``clock_skew_seconds``), an answer to a
request MARS made and has not seen answered (``InResponseTo``), and never seen before.
Answers nobody asked for (IdP-initiated) are refused unless ``allow_idp_initiated``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.saml import (
    NAMEID_FORMAT_EMAILADDRESS,
    NAMEID_FORMAT_PERSISTENT,
    NAMEID_FORMAT_TRANSIENT,
    NAMEID_FORMAT_UNSPECIFIED,
)
from saml2.time_util import str_to_time

from mars_server import public_url
from mars_sso.oidc import ProviderError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.response import AuthnResponse

_configs: dict[tuple[str, str, str], SPConfig] = {}
_lock = threading.Lock()


def entity_id(provider: Mapping[str, Any]) -> str:
    """MARS's name as this provider's service provider: its metadata's address."""
    return public_url(f"/sso/{provider['name']}/metadata")


def acs_url(provider: Mapping[str, Any]) -> str:
    return public_url(f"/sso/{provider['name']}/acs")


def _idp_metadata(provider: Mapping[str, Any]) -> str:
    value = str(provider["idp_metadata"]).strip()
    if value.startswith("<"):
        return value
    try:
        return Path(value).read_text(encoding="utf-8")
    except OSError as error:
        raise ProviderError(f"{provider['label']} is not set up correctly.") from error


def _config(provider: Mapping[str, Any]) -> SPConfig:
    key = (provider["name"], entity_id(provider), str(provider["idp_metadata"]))
    with _lock:
        config = _configs.get(key)
        if config is None:
            xmlsec = shutil.which("xmlsec1")
            if xmlsec is None:
                raise ProviderError(
                    f"{provider['label']} cannot be used here: xmlsec1 is not installed."
                )
            from saml2.config import SPConfig  # 0.6 s to import: only when SAML is used

            config = SPConfig()
            config.load(
                {
                    "entityid": entity_id(provider),
                    "xmlsec_binary": xmlsec,
                    "metadata": {"inline": [_idp_metadata(provider)]},
                    "accepted_time_diff": provider["clock_skew_seconds"],
                    "allow_unknown_attributes": True,
                    "service": {
                        "sp": {
                            "name": "MARS",
                            "endpoints": {
                                "assertion_consumer_service": [
                                    (acs_url(provider), BINDING_HTTP_POST)
                                ]
                            },
                            "want_assertions_signed": True,
                            "want_response_signed": False,
                            "allow_unsolicited": provider["allow_idp_initiated"],
                            "authn_requests_signed": False,
                        }
                    },
                }
            )
            _configs[key] = config
        return config


def _client(provider: Mapping[str, Any]) -> Saml2Client:
    # A client per request: pysaml2's keeps every person it saw in memory otherwise.
    from saml2.client import Saml2Client

    return Saml2Client(config=_config(provider))


def _idp(client: Saml2Client, provider: Mapping[str, Any]) -> str:
    idps = list(client.metadata.identity_providers())
    if len(idps) != 1:
        raise ProviderError(f"{provider['label']} is not set up correctly.")
    return str(idps[0])


NAME_ID_FORMATS = {
    "persistent": NAMEID_FORMAT_PERSISTENT,
    "emailAddress": NAMEID_FORMAT_EMAILADDRESS,
    "unspecified": NAMEID_FORMAT_UNSPECIFIED,
}


def authorization_url(
    provider: Mapping[str, Any], relay_state: str, *, fresh: bool = False
) -> tuple[str, str]:
    """(the address to send the browser to, the AuthnRequest's ID). It asks for a lasting
    NameID (``name_id_format``); ``fresh``: the person signs in again (``ForceAuthn``)."""
    client = _client(provider)
    extra = {"force_authn": "true"} if fresh else {}
    request_id, info = client.prepare_for_authenticate(
        entityid=_idp(client, provider),
        relay_state=relay_state,
        binding=BINDING_HTTP_REDIRECT,
        nameid_format=NAME_ID_FORMATS[provider["name_id_format"]],
        allow_create="true",
        **extra,
    )
    location = dict(info["headers"])["Location"]
    return location, str(request_id)


@dataclass(frozen=True)
class Assertion:
    """What a checked assertion says: who (``subject``, the NameID), their attributes, its ID
    and until when it could be replayed."""

    subject: str
    claims: dict[str, list[str]]
    assertion_id: str
    valid_until: dt.datetime


def parse(
    provider: Mapping[str, Any],
    saml_response: str,
    request_id: str | None,
    *,
    signed_in_since: dt.datetime | None = None,
) -> Assertion:
    """The checked answer of the identity provider to ``request_id`` (``None``: to no
    request of MARS's, refused unless IdP-initiated sign-in is allowed). ``signed_in_since``:
    the person must have signed in at the provider since then (``AuthnInstant``)."""
    client = _client(provider)
    outstanding = {request_id: acs_url(provider)} if request_id else {}
    try:
        response = client.parse_authn_request_response(
            saml_response, BINDING_HTTP_POST, outstanding=outstanding
        )
    except ProviderError:
        raise
    except Exception as error:  # pysaml2 raises many kinds, and bare Exceptions too
        raise ProviderError(
            f"{provider['label']} sent a sign-in MARS cannot accept ({_reason(error)})."
        ) from error
    if response is None or response.assertion is None or response.name_id is None:
        raise ProviderError(f"{provider['label']} sent a sign-in MARS cannot accept.")
    refusal = _refusal(provider, client, response, request_id, signed_in_since)
    if refusal:
        raise ProviderError(f"{provider['label']} sent a sign-in MARS cannot accept ({refusal}).")
    assertion = response.assertion
    skew = dt.timedelta(seconds=provider["clock_skew_seconds"])
    return Assertion(
        subject=str(response.name_id.text),
        claims=attributes(provider, response),
        assertion_id=str(assertion.id),
        valid_until=_instant(assertion.conditions.not_on_or_after) + skew,
    )


def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(calendar.timegm(str_to_time(value)), dt.UTC)


def _refusal(
    provider: Mapping[str, Any],
    client: Saml2Client,
    response: AuthnResponse,
    request_id: str | None,
    signed_in_since: dt.datetime | None,
) -> str | None:
    """What MARS checks beyond pysaml2, or makes sure of: why the assertion cannot sign
    anyone in, or ``None``."""
    assertion = response.assertion
    if assertion.signature is None or _weak(assertion.signature):
        return "it is signed with SHA-1" if assertion.signature else "it is not signed"
    idp = _idp(client, provider)
    issuers = {
        getattr(response.response.issuer, "text", idp),
        getattr(assertion.issuer, "text", None),
    }
    if issuers != {idp}:
        return "it is from another identity provider"
    if request_id is not None and response.in_response_to != request_id:
        return "it answers another sign-in"
    conditions = assertion.conditions
    audiences = [
        audience.text
        for restriction in (conditions.audience_restriction if conditions else [])
        for audience in restriction.audience
    ]
    if not audiences or entity_id(provider) not in audiences or not conditions.not_on_or_after:
        return "it is not for MARS"
    confirmations = assertion.subject.subject_confirmation
    recipients = [
        getattr(confirmation.subject_confirmation_data, "recipient", None)
        for confirmation in confirmations
    ]
    if not recipients or any(recipient != acs_url(provider) for recipient in recipients):
        return "it was sent to another address"
    name_id = response.name_id
    text = (name_id.text or "").strip()
    if name_id.format == NAMEID_FORMAT_TRANSIENT or not text or len(text) > 255:
        return "it names nobody lastingly: ask for a persistent NameID"
    if signed_in_since is not None:
        skew = dt.timedelta(seconds=provider["clock_skew_seconds"])
        instants = [
            _instant(statement.authn_instant)
            for statement in assertion.authn_statement
            if statement.authn_instant
        ]
        if not instants or max(instants) < signed_in_since - skew:
            return "you were not asked to sign in again, as the app wants"
    return None


def _weak(signature: Any) -> bool:
    """Whether a signature relies on SHA-1, which forgers can collide."""
    info = signature.signed_info
    algorithms = [info.signature_method.algorithm]
    algorithms += [reference.digest_method.algorithm for reference in info.reference]
    return any(algorithm.endswith(("sha1", "#dsa-sha1")) for algorithm in algorithms)


def _reason(error: Exception) -> str:
    name = type(error).__name__
    return {
        "SignatureError": "it is not signed, or not by the identity provider",
        "MissingSignatureError": "it is not signed",
        "ResponseLifetimeExceed": "it has expired",
        "ToEarly": "it is not valid yet",
        "UnsolicitedResponse": "MARS did not ask for it",
        "VerificationError": "it is not for MARS",
        "StatusError": "the identity provider refused the sign-in",
    }.get(name, name)


def attributes(provider: Mapping[str, Any], response: AuthnResponse) -> dict[str, list[str]]:
    """The assertion's attributes; the address from an e-mail NameID when none holds it."""
    claims = {name: [str(v) for v in values] for name, values in response.get_identity().items()}
    name_id = response.name_id
    if provider["email_claim"] not in claims and name_id.format == NAMEID_FORMAT_EMAILADDRESS:
        claims[provider["email_claim"]] = [str(name_id.text)]
    return claims


def metadata(provider: Mapping[str, Any]) -> str:
    """MARS's service provider metadata for this provider, as XML."""
    from saml2.metadata import create_metadata_string

    return str(create_metadata_string(None, config=_config(provider), valid=None).decode())


def check(provider: Mapping[str, Any]) -> None:
    """Raise :class:`ProviderError` unless MARS can sign people in with this provider."""
    _idp(_client(provider), provider)
