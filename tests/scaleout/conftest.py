from __future__ import annotations

import os

import pytest

from tests.scaleout.cluster import Cluster, nginx_binary

#: Requests per minute an authenticated caller may make in the cluster.
LIMIT = 40


@pytest.fixture(scope="module")
def cluster(database_url, tmp_path_factory):
    """The cluster, once for the module, on the PostgreSQL server of ``database_url``."""
    if nginx_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing; .ci/run installs Debian's nginx")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    cluster = Cluster(
        database_url,
        tmp_path_factory.mktemp("scaleout"),
        MARS_RATELIMIT_DEFAULT=f"{LIMIT}/minute",
        # Anonymous traffic is all 127.0.0.1 here: it must not be what the tests measure.
        MARS_RATELIMIT_ANONYMOUS="100000/minute",
    )
    try:
        cluster.start()
        yield cluster
    finally:
        codes = cluster.stop()
        for name, process in cluster.processes.items():
            if codes.get(name) not in (0, None, -9, -15):
                print(f"--- {name} exited {codes[name]}:\n{process.log()[-4000:]}")
