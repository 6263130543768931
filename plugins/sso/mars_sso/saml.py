"""MARS as a SAML 2.0 service provider, with pysaml2 (which runs Debian's ``xmlsec1`` to check
XML signatures).

What an assertion must be to sign anyone in: signed by the identity provider's key from its
metadata, for MARS (audience), sent to MARS's assertion consumer service (recipient and
destination), within its validity (give or take ``clock_skew_seconds``), an answer to a
request MARS made and has not seen answered (``InResponseTo``), and never seen before.
Answers nobody asked for (IdP-initiated) are refused unless ``allow_idp_initiated``.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string

from mars_server import public_url
from mars_sso.oidc import ProviderError

if TYPE_CHECKING:
    from collections.abc import Mapping

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
    return Saml2Client(config=_config(provider))


def _idp(client: Saml2Client, provider: Mapping[str, Any]) -> str:
    idps = list(client.metadata.identity_providers())
    if len(idps) != 1:
        raise ProviderError(f"{provider['label']} is not set up correctly.")
    return str(idps[0])


def authorization_url(provider: Mapping[str, Any], relay_state: str) -> tuple[str, str]:
    """(the address to send the browser to, the AuthnRequest's ID)."""
    client = _client(provider)
    request_id, info = client.prepare_for_authenticate(
        entityid=_idp(client, provider),
        relay_state=relay_state,
        binding=BINDING_HTTP_REDIRECT,
    )
    location = dict(info["headers"])["Location"]
    return location, str(request_id)


def parse(provider: Mapping[str, Any], saml_response: str, request_id: str | None) -> AuthnResponse:
    """The checked answer of the identity provider to ``request_id`` (``None``: to no
    request of MARS's, refused unless IdP-initiated sign-in is allowed)."""
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
    signature = response.assertion.signature
    if signature is None or _weak(signature):
        raise ProviderError(
            f"{provider['label']} sent a sign-in MARS cannot accept (it is signed with SHA-1)."
        )
    if request_id is not None and response.in_response_to != request_id:
        raise ProviderError(f"{provider['label']} answered another sign-in than this one.")
    return response


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


def attributes(response: AuthnResponse) -> dict[str, list[str]]:
    return {name: [str(v) for v in values] for name, values in response.get_identity().items()}


def metadata(provider: Mapping[str, Any]) -> str:
    """MARS's service provider metadata for this provider, as XML."""
    return str(create_metadata_string(None, config=_config(provider), valid=None).decode())


def check(provider: Mapping[str, Any]) -> None:
    """Raise :class:`ProviderError` unless MARS can sign people in with this provider."""
    _idp(_client(provider), provider)
