"""ASGI entry point. Servers put platform/ on sys.path first."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
application = get_asgi_application()
