"""Where the checkout, its data folder and its bundled folders are."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM_DIR = REPO_ROOT / "platform"


def data_dir() -> Path:
    """Return the data folder (embedded database, secret key, model store), creating it."""
    path = Path(os.environ.get("PLATFORM_DATA_DIR") or REPO_ROOT / ".data").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
