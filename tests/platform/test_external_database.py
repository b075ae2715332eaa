"""The DATABASE_URL pass (tests/external_database.py), which the README's test command runs after
the suite: what it runs, on which database, and what it does without a server.

The pass itself is the proof that the tests pass against a server given by DATABASE_URL; running it
from inside the suite would run the suite twice in one job.
"""

import subprocess

import pytest

from tests import external_database
from tests.helpers import REPO_ROOT, free_port

COLLECTED = ["tests/annotate/test_queue.py", "tests/annotate/test_agreement.py", "tests/platform/test_embedded_database.py",
             "tests/platform/test_health_and_worker.py"]


def test_each_pass_has_a_database_of_its_own():
    names = {external_database.database_name() for _ in range(3)}
    assert len(names) == 3


def test_the_pass_runs_the_tests_that_use_the_database_and_are_not_browser_or_training_tests():
    command = external_database.pass_command(["--collect-only", "-q", *COLLECTED])
    assert command[command.index("not browser and not training") - 1] == "-m"
    listed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    collected = {line.split("::")[0] for line in listed.stdout.splitlines() if "::" in line}
    # The embedded server's tests unset DATABASE_URL; the agreement figures open no connection.
    assert collected == {"tests/annotate/test_queue.py", "tests/platform/test_health_and_worker.py"}, listed.stdout


@pytest.mark.parametrize("ci, code, said", [("true", 1, "CI must provide PostgreSQL"), ("", 0, "skipped")])
def test_without_a_server_the_pass_fails_on_ci_and_is_skipped_elsewhere(monkeypatch, capsys, ci, code, said):
    monkeypatch.setenv("CI", ci)
    assert external_database.main([], port=free_port()) == code  # nothing listens on a port just freed
    out, err = capsys.readouterr()
    assert said in out + err


def test_the_pass_drops_its_database_even_while_something_is_still_connected():
    host, port = external_database.HOST, external_database.PORT
    if not external_database.server_listening(host, port):
        pytest.skip(f"no PostgreSQL server on {host}:{port}")
    import psycopg

    server, name = f"postgres://postgres@{host}:{port}", external_database.database_name()
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "test_{name}"')
        left_behind = psycopg.connect(f"{server}/test_{name}")  # as a killed worker would leave it
        try:
            external_database.database_drop(server, name)
        finally:
            left_behind.close()
        assert not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [f"test_{name}"]).fetchone()
