"""Single sign-on in a real browser (Debian's chromium, driven by Selenium): MARS's sign-in
page, the button, the other MARS's sign-in and consent pages on another origin, and back to
the website with a code. What only a browser checks is checked here: its CSP ``form-action``
follows the consent form's answer across origins."""

from __future__ import annotations

import os
import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from sso_helpers import IDP_PERSON, PASSWORD, WEBSITE_CALLBACK, website_sign_in_url

from mars_server.db import db

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.slow(10),
    # CI always has them (.ci/run installs Debian's chromium and chromium-driver).
    pytest.mark.skipif(
        (CHROMIUM is None or CHROMEDRIVER is None) and os.environ.get("CI") != "true",
        reason="Debian's chromium and chromium-driver are not installed",
    ),
]


@pytest.fixture
def app_config(browser_openid_provider):
    provider = {
        "name": "corp",
        "kind": "oidc",
        "label": "Sign in with Corp",
        "issuer": browser_openid_provider.url,
        "client_id": browser_openid_provider.client_id,
        "client_secret": browser_openid_provider.client_secret,
        "domains": ["corp.example"],
    }
    return {"PLUGINS": {"sso": {"providers": [provider]}}}


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "CI must have them: .ci/run installs Debian's packages"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Nothing but loopback: MARS under test (127.0.0.1) and the provider (localhost).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_a_person_signs_in_with_the_provider_in_a_browser(
    app, live_server, website, browser_openid_provider, browser
):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mars_server.auth.models import OAuthClient, User

    idp = browser_openid_provider
    with idp.app.app_context():  # the provider knows MARS under test at its real address
        client = db.session.scalar(sa.select(OAuthClient).filter_by(client_id=idp.client_id))
        client.redirect_uris = [f"{live_server}/sso/corp/callback"]
        db.session.commit()

    def wait(condition):
        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(browser, 20, ignored_exceptions=ignored).until(condition)

    browser.get(live_server + website_sign_in_url(website))
    wait(lambda d: d.find_element(By.LINK_TEXT, "Sign in with Corp")).click()
    wait(lambda d: d.current_url.startswith(idp.url + "/oauth/authorize"))
    browser.find_element(By.ID, "email").send_keys(IDP_PERSON)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button.primary").click()
    # the provider's consent page, on its own origin; its answer leads to MARS under test
    wait(lambda d: d.find_element(By.XPATH, "//button[@value='approve']")).click()
    # ... which signs the person in and sends them on to the website with a code
    # (through the browser's CSP form-action, which follows every hop from the consent form)
    wait(lambda d: d.current_url.startswith(WEBSITE_CALLBACK))
    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["state"] == ["website-state"] and query["code"]
    person = db.session.scalar(sa.select(User).filter_by(email=IDP_PERSON))
    assert person is not None and person.display_name == "Ada Lovelace"
