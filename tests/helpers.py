"""Helpers for tests that start platform processes (web, worker) against the test database, and
for tests that wait for something to happen."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.db import connection

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """Return a DATABASE_URL naming the database this test runs on, for child processes."""
    params = connection.get_connection_params()
    host = params.get("host") or ""
    port = params.get("port") or 5432
    user = params.get("user") or "postgres"
    password = params.get("password") or ""
    auth = f"{user}:{password}" if password else user
    if host.startswith("/"):
        return f"postgres://{auth}@/{params['dbname']}?host={host}&port={port}"
    return f"postgres://{auth}@{host}:{port}/{params['dbname']}"


def child_env(**extra) -> dict:
    env = dict(os.environ, DATABASE_URL=test_database_url(), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def wait_until(condition, *, what: str, timeout: float = 60, interval: float = 0.2):
    """Return the first true value of `condition()`, asked every `interval` seconds until `timeout`.

    Tests wait on what they need rather than sleep a fixed time: on a loaded machine (CI shares its
    cores) any fixed sleep is sometimes too short, so the deadline is generous and a test that
    passes returns as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float = 60, process: subprocess.Popen | None = None) -> bytes:
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except Exception as error:  # not up yet
            last_error = error
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout}s: {last_error}")


def run_python(code: str, *, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_queued_jobs(queues: list[str] | None = None, *, timeout: float = 120) -> None:
    """Run a Procrastinate worker until the queue (or `queues`) is empty, as `manage.py worker` would.

    In a thread of its own: the worker runs an event loop, and the caller's thread may have one (Playwright's).
    Each job's database connection is closed after it: the worker keeps one for CONN_MAX_AGE, and a test
    database with a connection left open cannot be dropped at the end of the run."""
    import threading

    from django.db import connections
    from procrastinate.contrib.django import app

    def close_connection_after(call_next, context, worker):
        try:
            return call_next()
        finally:
            connections.close_all()

    def work():
        worker_app = app.with_connector(app.connector.get_worker_connector())
        middleware = [*app.worker_defaults.get("task_middleware", []), close_connection_after]
        try:
            worker_app.run_worker(queues=queues, wait=False, install_signal_handlers=False, listen_notify=False,
                                  task_middleware=middleware)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, name="test-worker")
    thread.start()
    thread.join(timeout=timeout)
