"""Gunicorn settings for the web process: `gunicorn -c platform/gunicorn.conf.py`.

https://docs.gunicorn.org/en/stable/settings.html
"""

import multiprocessing
import os
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
# platform/ (the settings package's folder, never a package) and the checkout (the apps).
pythonpath = f"{_root / 'platform'},{_root}"
chdir = str(_root)
wsgi_app = "platform_config.wsgi:application"
bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# Threads let one worker overlap requests that wait on the database.
threads = int(os.environ.get("WEB_THREADS", 4))
worker_class = "gthread"
timeout = 60
graceful_timeout = 20
accesslog = os.environ.get("ACCESS_LOG") or None
