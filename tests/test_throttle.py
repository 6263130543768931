"""The throttle's keys: spellings of one mailbox share one allowance, one IPv6 host is one
address, and old counts are purged."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import time_machine

from mars_server.auth import throttle
from mars_server.auth.models import Throttle
from tests.mailbox import development_mail as mailbox


@pytest.mark.parametrize(
    "spelling",
    [
        "victim@example.test",
        "Victim@EXAMPLE.test",
        '"victim"@example.test',
        "victim@exa\u00admple.test",  # a soft hyphen, dropped by IDNA
        "\uff56\uff49\uff43\uff54\uff49\uff4d@example.test",  # fullwidth letters
        "victim+news@example.test",
        "victim@example.test.",
    ],
)
def test_spellings_of_one_mailbox_share_one_key(spelling):
    assert throttle.mailbox_key(spelling) == "victim@example.test"


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_an_address_is_counted_by_what_one_host_holds(address, key):
    assert throttle.address_key(address) == key


def test_spellings_cannot_get_around_the_recipients_allowance(app):
    client = app.test_client()
    spellings = [
        "victim@example.test",
        '"victim"@example.test',
        "victim@exa\u00admple.test",
        "\uff56\uff49\uff43\uff54\uff49\uff4d@example.test",
        "victim+1@example.test",
    ]
    for n, email in enumerate(spellings):  # each a new account: each would get its link
        response = client.post(
            "/api/v1/accounts",
            json={"email": email, "password": "correct horse battery staple"},
            environ_base={"REMOTE_ADDR": f"192.0.2.{n}"},
        )
        assert response.status_code == 202, response.json
    assert len(mailbox(app)) == 3


def test_one_ipv6_host_cannot_hop_addresses_past_the_limit(make_app):
    app = make_app(PLUGINS={"auth": {"account_mail_requests_per_address": 2}})
    client = app.test_client()
    answers = [
        client.post(
            "/api/v1/accounts/password-reset",
            json={"email": f"someone{n}@example.test"},
            environ_base={"REMOTE_ADDR": f"2001:db8:7:7::{n + 1:x}"},
        ).status_code
        for n in range(3)
    ]
    assert answers == [202, 202, 429]


def test_counts_past_every_window_are_purged(app, db):
    with time_machine.travel(dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC), tick=False) as clock:
        throttle.count(throttle.Limit.of("ip", "192.0.2.1", 5, 15))
        db.session.commit()
        clock.shift(dt.timedelta(minutes=59))
        throttle.count(throttle.Limit.of("ip", "192.0.2.2", 5, 15))
        db.session.commit()
        clock.shift(dt.timedelta(minutes=2))  # the first is past the longest window (60 min)
        assert throttle.purge_stale() == 1
        db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Throttle)) == 1


def test_the_purge_is_scheduled(app):
    state = app.extensions["mars"]
    assert state.schedules["auth.purge_throttles"].task in state.tasks
