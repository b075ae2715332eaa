"""Find Debian's Chromium for the browser tests, installing it with apt-get where it is missing.

Playwright drives the system's Chromium (`/usr/bin/chromium`); it never downloads a browser of its
own. When the binary is missing and the tests run as root (as CI does), it is installed from
Debian's packages; otherwise the reason it cannot be had is returned for a skip message (CI turns
that into a failure).
"""

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _apt(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, timeout=900)


def chromium_problem() -> str | None:
    """Make sure Chromium is there; return why it cannot be, or None when it is."""
    if CHROMIUM.exists():
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"{CHROMIUM} is missing and installing it needs root: run `apt-get install -y chromium` as root"
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and this system has no apt-get to install Debian's chromium package"
    # The package lists may be missing or stale on a fresh machine: refresh them first.
    updated = _apt("update")
    installed = _apt("install", "-y", "chromium")
    if installed.returncode != 0 or not CHROMIUM.exists():
        tail = (updated.stderr + installed.stdout + installed.stderr)[-1500:]
        return f"`apt-get install -y chromium` failed (exit {installed.returncode}):\n{tail}"
    return None


if __name__ == "__main__":
    problem = chromium_problem()
    print(problem or f"{CHROMIUM} is installed")
    raise SystemExit(1 if problem else 0)
