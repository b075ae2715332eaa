"""The table the chat and generation throttles count requests in (settings: CACHES["throttles"], a DatabaseCache).

Django makes a database cache's table with `createcachetable`, not from a model: run here, `migrate` makes it
wherever the platform is installed (the test database gets it from Django's test set-up as well).
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = []

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
