"""Fixtures shared by the test packages."""

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The session's folder for the small real bundle and keys of `tests.bundle_support`
    (each is made once and reused)."""
    path = tmp_path_factory.getbasetemp() / "bundle_base"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty schema on the test PostgreSQL server (tools/test_postgres.sh starts it;
    $PUF_TEST_POSTGRES names another), as a URL whose connections use it; dropped afterwards."""
    import os
    import uuid

    import sqlalchemy as sa

    server = sa.make_url(os.environ.get("PUF_TEST_POSTGRES",
                                        "postgresql+psycopg://puf_test:puf_test@127.0.0.1:5432/puf_test"))
    schema = f"test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server)
    try:
        with engine.begin() as db:
            db.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as error:
        engine.dispose()
        pytest.fail(f"no PostgreSQL server at {server!r}: run tools/test_postgres.sh first ({error.orig})")
    yield server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    with engine.begin() as db:
        db.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
