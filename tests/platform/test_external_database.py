"""The same suite passes with DATABASE_URL pointing at a PostgreSQL server of your own.

Dev and CI machines run one on 127.0.0.1:5432 (trust auth, user postgres). On CI it must be
there; elsewhere the test is skipped with a message when nothing listens on that port.
"""

import os
import socket
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

EXTERNAL_URL = os.environ.get("EXTERNAL_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def server_listening(host="127.0.0.1", port=5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_suite_passes_against_a_server_given_by_database_url():
    if os.environ.get("DATABASE_URL"):
        pytest.skip("this run already uses DATABASE_URL")
    if not server_listening():
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL on 127.0.0.1:5432 to test the DATABASE_URL path")
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 to test the DATABASE_URL path against")
    env = dict(os.environ, DATABASE_URL=EXTERNAL_URL)
    # Everything but the tests that train or load models and the browser tests, which do not touch
    # the connection settings, and but this test itself.
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-m", "not browser and not training",
            "--deselect", "tests/platform/test_external_database.py",
            "--create-db",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
