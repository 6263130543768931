"""A person signs up and in on the example website, in a real browser (Debian's chromium,
driven by Selenium through Debian's chromedriver): registration, the verification mail, the
sign-in, the projects, the sign-out, and a refresh token that no longer works."""

from __future__ import annotations

import os
import re
import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mars_server.testing import make_token
from tests.mailbox import development_mail

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PASSWORD = "a long and quite unusual passphrase"

pytestmark = [
    pytest.mark.chromium,
    # CI always has them (.ci/run installs Debian's chromium and chromium-driver).
    pytest.mark.skipif(
        (CHROMIUM is None or CHROMEDRIVER is None) and os.environ.get("CI") != "true",
        reason="Debian's chromium and chromium-driver are not installed",
    ),
    pytest.mark.parametrize("app_config", [{"ENV": "development"}]),
]


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
        # Nothing but loopback: the example and MARS need nothing from the internet.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=20):
    """Wait until ``condition(driver)``; an element the page replaced meanwhile (it navigated
    or re-rendered) is looked for again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition)


def by_id(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def link(driver, text):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.LINK_TEXT, text)


def status_is(value):
    return lambda d: by_id(d, "status").text == value


def fill(driver, **fields):
    for name, value in fields.items():
        element = by_id(driver, name)
        element.clear()
        element.send_keys(value)


def submit(driver):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_a_person_signs_up_and_in_on_the_website_and_out_again(app, live_server, browser):
    website = f"{live_server}/examples/website/"
    browser.get(website)
    wait_for(browser, status_is("signed-out"))

    # The website sends them to MARS's sign-in page; they have no account yet.
    by_id(browser, "sign-in").click()
    wait_for(browser, lambda d: "Sign in to MARS" in d.page_source)
    link(browser, "Create an account").click()
    wait_for(browser, lambda d: "Create your MARS account" in d.page_source)
    fill(browser, email="ada@example.test", display_name="Ada", password=PASSWORD)
    submit(browser)
    wait_for(browser, lambda d: "Check your mail" in d.page_source)

    # The verification mail, from the development mailbox.
    [mail] = development_mail(app)
    text = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    verify_url = re.search(r"https?://\S+", text.get_payload(decode=True).decode()).group(0)
    assert verify_url.startswith(f"{live_server}/accounts/verify?")
    browser.get(verify_url)
    submit(browser)  # "Confirm my address"
    wait_for(browser, lambda d: "Your address is confirmed" in d.page_source)

    # "Sign in" goes back to the sign-in the website started, which now succeeds.
    link(browser, "Sign in").click()
    wait_for(browser, lambda d: "Sign in to MARS" in d.page_source)
    fill(browser, email="ada@example.test", password=PASSWORD)
    submit(browser)
    wait_for(browser, status_is("signed-in"))
    assert "ada@example.test" in by_id(browser, "who").text
    assert by_id(browser, "error").text == ""

    # Their projects: one made through the API, shown once the page loads again.
    from mars_server.auth.accounts import find_user

    user = find_user("ada@example.test")
    created = requests.post(
        f"{live_server}/api/v1/projects",
        json={"slug": "rover", "name": "Rover"},
        headers={"Authorization": f"Bearer {make_token(app, user, ['projects:write'])}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    browser.refresh()  # a new page: its access token is gone, the refresh token gets another
    wait_for(browser, status_is("signed-in"))
    wait_for(browser, lambda d: by_id(d, "projects").text == "Rover")

    # Signing out: back on the website, signed out of MARS, the refresh token dead.
    refresh_token = browser.execute_script("return sessionStorage.getItem('mars.refresh_token')")
    client_id = requests.get(f"{website}config.json", timeout=10).json()["client_id"]
    by_id(browser, "sign-out").click()
    wait_for(browser, status_is("signed-out"))
    assert urlsplit(browser.current_url).path == "/examples/website/"
    assert browser.execute_script("return sessionStorage.getItem('mars.refresh_token')") is None
    dead = requests.post(
        f"{live_server}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
        timeout=10,
    )
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    by_id(browser, "sign-in").click()  # MARS asks them to sign in again
    wait_for(browser, lambda d: "Sign in to MARS" in d.page_source)
    assert parse_qs(urlsplit(browser.current_url).query)["client_id"] == [client_id]
