"""With no DATABASE_URL, platform processes share one embedded PostgreSQL server.

The first process to connect starts it; the last to exit stops it; one killed outright does
not keep it alive for ever.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

HOLD = (
    "from django.db import connection\n"
    "with connection.cursor() as cursor:\n"
    "    cursor.execute('SELECT pg_backend_pid()'); cursor.fetchone()\n"
    "print('connected', flush=True)\n"
    "import sys; sys.stdin.readline()\n"
    "with connection.cursor() as cursor:\n"
    "    cursor.execute('SELECT 1'); assert cursor.fetchone() == (1,)\n"
    "print('still connected', flush=True)\n"
)


def holder(data_dir: Path) -> subprocess.Popen:
    """Start a platform process that connects, then waits for a line on stdin before exiting."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PLATFORM_DATA_DIR"] = str(data_dir)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", HOLD],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if line.strip() != "connected":
        process.kill()
        raise AssertionError(f"the process did not connect: {line!r} {process.communicate()[1]}")
    return process


def release(process: subprocess.Popen) -> str:
    out, err = process.communicate("\n", timeout=60)
    assert process.returncode == 0, err
    return out


def server_running(data_dir: Path) -> bool:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_stopped(data_dir: Path, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server_running(data_dir):
            return True
        time.sleep(0.2)
    return False


def test_first_process_starts_the_server_and_last_one_stops_it(tmp_path):
    data = tmp_path / "data"
    assert not server_running(data)
    web = holder(data)
    assert server_running(data)
    worker = holder(data)
    assert "still connected" in release(web)
    assert server_running(data), "the server stopped while the worker still used it"
    assert "still connected" in release(worker)
    assert wait_until_stopped(data), "the server outlived the last platform process"


def test_a_killed_process_does_not_keep_the_server_alive(tmp_path):
    data = tmp_path / "data"
    crashed = holder(data)
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    assert server_running(data)
    survivor = holder(data)
    release(survivor)
    assert wait_until_stopped(data), "a dead process's registration kept the server running"
