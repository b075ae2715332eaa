"""WSGI entry point. Servers put platform/ on sys.path first (see platform/gunicorn.conf.py)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
application = get_wsgi_application()

# Import the URL configuration, and with it every view, as the worker starts: otherwise the first request each
# gunicorn worker serves spends a second of CPU importing them (numpy, drf-spectacular, the training apps).
get_resolver().url_patterns
