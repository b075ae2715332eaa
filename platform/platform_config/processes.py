"""Run the web server (gunicorn) and the job workers together until Ctrl-C or SIGTERM (manage.py serve, demo)."""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings

from .paths import PLATFORM_DIR, REPO_ROOT


def start_web(*, bind: str, workers: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, BIND=bind)
    if workers:
        env["WEB_WORKERS"] = str(workers)
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(PLATFORM_DIR / "gunicorn.conf.py")],
        cwd=REPO_ROOT,
        env=env,
    )


def start_worker(queues: str = "") -> subprocess.Popen:
    """Start a job worker for the given comma-separated queues (all queues when empty)."""
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "manage.py"), "procrastinate", "worker", "--queues", queues], cwd=REPO_ROOT
    )


def stop_all(processes: list[subprocess.Popen], timeout: float = 20) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(*, bind: str, workers: int | None, with_worker: bool, out, banner: str = "") -> None:
    """Start web and worker, print where they are, and supervise them until a signal."""
    # The children run with DEBUG off unless DEBUG=true asks for it: development defaults it on (for
    # runserver), and its pages show anyone the URL list on a 404 and a traceback on an error.
    if not os.environ.get("DEBUG", "").strip():
        os.environ["DEBUG"] = "false"
    processes = [start_web(bind=bind, workers=workers)]
    if with_worker:
        processes += [start_worker(queues) for queues in settings.SERVE_WORKER_QUEUES]
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out.write(f"\nThe platform runs at http://{bind}/  (health: http://{bind}/health/)\n")
    if banner:
        out.write(banner)
    out.write("Press Ctrl-C to stop.\n")
    try:
        while not stopping:
            for process in processes:
                if process.poll() is not None:
                    out.write(f"a child process exited with code {process.returncode}; stopping\n")
                    stopping = True
            time.sleep(0.5)
    finally:
        stop_all(processes)
        out.write("Stopped.\n")
