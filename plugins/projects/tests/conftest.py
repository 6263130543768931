from __future__ import annotations

import itertools

import pytest


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
