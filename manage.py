#!/usr/bin/env python3
"""Run the platform's management commands (runserver, migrate, demo, procrastinate worker...)."""

import os
import sys
from pathlib import Path

# platform/ holds the settings package; it is a plain folder, never a package itself.
sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
