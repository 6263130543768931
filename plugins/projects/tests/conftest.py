from __future__ import annotations

import itertools

import pytest

from mars_server.testing import signed_in_client


@pytest.fixture
def client(app):
    """A test client signed in, on every request, as a member holding every scope.

    ``client.user`` is that user. For anonymous requests use ``app.test_client()``.
    """
    return signed_in_client(app)


@pytest.fixture
def create_project(client):
    """``create_project(**fields)`` through the API; returns the body plus its ``etag``."""
    numbers = itertools.count()

    def create(**fields):
        n = next(numbers)
        body = {"slug": f"project-{n}", "name": f"Project {n}"} | fields
        response = client.post("/api/v1/projects", json=body)
        assert response.status_code == 201, response.json
        return response.json | {"etag": response.headers["ETag"]}

    return create


@pytest.fixture
def alice(app):
    """A person with a token of every scope (``alice.user``)."""
    return signed_in_client(app)


@pytest.fixture
def bob(app):
    """Another person, to probe what alice's things show him."""
    return signed_in_client(app)
