"""The application's extension singletons, created unbound and bound in ``create_app``.

The flask-smorest ``Api`` is not among them: it keeps the OpenAPI document of one app,
so ``create_app`` builds one per application (see :mod:`mars_server.http.spec`).
"""

from __future__ import annotations

from flask_cors import CORS
from flask_migrate import Migrate

from mars_server.db import db

migrate = Migrate(db=db)
cors = CORS()

__all__ = ["cors", "db", "migrate"]
