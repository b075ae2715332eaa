"""Run the tests that touch the database again, on a PostgreSQL server named by DATABASE_URL.

`python -m pytest` runs on the embedded server (a socket in `.data/`). Production names its own
server with DATABASE_URL, so the README's test command then runs this second pass against the one on
127.0.0.1:5432 (trust auth, user postgres), as dev and CI machines have:

    .venv/bin/python -m tests.external_database [more pytest arguments]

It runs the tests that use the database (pytest-django's `django_db` mark or a database fixture)
and are neither browser nor training tests: a test that opens no connection cannot depend on where
DATABASE_URL points (the embedded server's own tests even unset it), and the browser and training
tests reach the database through the same settings and connections the others prove. This module
is also the pytest plugin (`-p tests.external_database`) that leaves the other tests out.

The database gets a name of its own (pytest makes `test_<name>`), so passes that share a server
never collide, and it is dropped afterwards, even after a Ctrl-C or while a child process still
holds a connection. With nothing listening on the port, the pass fails on CI (CI=true) and is
skipped with a message elsewhere.
"""

import os
import secrets
import socket
import subprocess
import sys

from tests.helpers import REPO_ROOT

HOST, PORT = "127.0.0.1", 5432
MARKERS = "not browser and not training"
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}


def server_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def database_name() -> str:
    """Return a database name no other pass on the same server uses: the pid and a random suffix."""
    return f"ci_{os.getpid()}_{secrets.token_hex(4)}"


def uses_the_database(item) -> bool:
    return item.get_closest_marker("django_db") is not None or bool(DATABASE_FIXTURES & set(item.fixturenames))


def pytest_collection_modifyitems(config, items):
    """As a plugin: deselect the tests that open no database connection."""
    kept, left_out = [], []
    for item in items:
        (kept if uses_the_database(item) else left_out).append(item)
    config.hook.pytest_deselected(items=left_out)
    items[:] = kept


def pass_command(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.external_database", "-m", MARKERS,
            *extra]


def database_drop(server: str, name: str) -> None:
    """Drop the pass's test database and any connection a killed child left on it."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        for database in (f"test_{name}", name):
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main(argv: list[str], *, host: str = HOST, port: int = PORT) -> int:
    on_ci = os.environ.get("CI", "").lower() in ("true", "1")
    if not server_listening(host, port):
        if on_ci:
            print(f"DATABASE_URL pass: failed: CI must provide PostgreSQL on {host}:{port}", file=sys.stderr)
            return 1
        print(f"DATABASE_URL pass: skipped: no PostgreSQL server on {host}:{port} to run the tests against")
        return 0
    server, name = f"postgres://postgres@{host}:{port}", database_name()
    print(f"DATABASE_URL pass: {server}/{name} (tests in test_{name}, dropped afterwards)", flush=True)
    env = dict(os.environ, DATABASE_URL=f"{server}/{name}")
    try:
        return subprocess.call(pass_command(argv), cwd=REPO_ROOT, env=env)
    finally:
        database_drop(server, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
