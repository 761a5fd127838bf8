"""Fixtures shared by the test packages."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def exports_record(tmp_path_factory) -> Path:
    """The session's own record of exported bundles (`trainer.export_record`), not the
    account's: a test's exports never vouch for a bundle outside the test run."""
    path = tmp_path_factory.getbasetemp() / "exports_record"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUF_EXPORTS", str(path))
        yield path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The session's folder for the small real bundle and keys of `tests.bundle_support`
    (each is made once and reused)."""
    path = tmp_path_factory.getbasetemp() / "bundle_base"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def enrolled(base, tmp_path_factory) -> tuple[Path, Path, object]:
    """The small signed bundle of `tests.bundle_support` (the 12 labels of field 0 enrolled),
    copied for the test module; the trusted-keys folder; the bundle loaded (`edge_app.bundle.Bundle`)."""
    from edge_app.bundle import load_bundle
    from tests.bundle_support import enrolled_bundle, keys

    path = enrolled_bundle(base, tmp_path_factory.mktemp("enrolled") / "bundle")
    trusted = keys(base)[1]
    return path, trusted, load_bundle(path, trusted)


@pytest.fixture(scope="module")
def verifier(enrolled):
    """A `Verifier` (the defaults: classify, label size found in each photo) on `enrolled`."""
    from edge_app.verify import Verifier

    return Verifier(enrolled[2])


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request, tmp_path):
    """A central registry's URL (tests/fabrication/test_central.py, test_journal_signed.py): the
    real PostgreSQL server, and SQLite through the same code."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.sqlite'}"
    return request.getfixturevalue("postgres_url")


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


@pytest.fixture(scope="session")
def milvus_server():
    """New databases on the test Milvus server ($PUF_TEST_MILVUS; default what
    tools/test_milvus.sh starts, which this fixture runs when no server answers, and then
    stops the server it started): each call the URI of a new empty database, all dropped
    afterwards."""
    import os
    import signal
    import subprocess
    import sys
    import uuid

    from pymilvus import MilvusClient, MilvusException

    server = os.environ.get("PUF_TEST_MILVUS", "http://127.0.0.1:19530")
    root = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("PUF_TEST_MILVUS_DATA", "/tmp/puf_test_milvus"))
    started = None
    try:
        client = MilvusClient(server, timeout=10)
    except MilvusException:  # none answers: the script starts one
        done = subprocess.run([str(root / "tools/test_milvus.sh"), str(Path(sys.executable).parent / "milvus-server")],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"no Milvus server at {server!r}, and tools/test_milvus.sh could not start one: {done.stderr}")
        started = int((data / "server.pid").read_text())
        client = MilvusClient(server, timeout=10)
    made = []

    def new_database() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        client.create_database(name)
        made.append(name)
        return f"{server.rstrip('/')}/{name}"

    yield new_database
    for name in made:
        inside = MilvusClient(f"{server.rstrip('/')}/{name}", timeout=10)
        for collection in inside.list_collections():
            inside.drop_collection(collection)
        inside.close()
        client.drop_database(name)
    client.close()
    if started is not None:  # milvus-server stops its server on SIGINT (Ctrl+C), not on SIGTERM
        os.kill(started, signal.SIGINT)


@pytest.fixture(scope="module", params=["milvus_lite", "milvus_server"])
def store_engine(request) -> str:
    """The fingerprint store's two engines (`trainer.fingerprint_store`): Milvus Lite, and a
    real Milvus server (`milvus_server`)."""
    return request.param



@pytest.fixture
def store_uri(store_engine, tmp_path, request) -> str:
    """A new, empty fingerprint store of each engine: a Milvus Lite file, or a new database on
    the test server."""
    if store_engine == "milvus_lite":
        return str(tmp_path / "fp.db")
    return request.getfixturevalue("milvus_server")()
