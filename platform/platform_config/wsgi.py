"""WSGI entry point. Servers put platform/ on sys.path first (see platform/gunicorn.conf.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
application = get_wsgi_application()
