"""Store with each remembered split the digest of the normalised text that decided it (split_key).

Exports then read 16 bytes per remembered root or document instead of its text. This fills the key of
every row remembered so far (by migration 0004, or by an export since).
"""

import hashlib

from django.db import migrations, models

CHUNK = 5_000


def content_digest(text: str) -> bytes:
    # training.exporters.rows.content_digest, copied: a migration must not change with the app.
    return hashlib.blake2b(" ".join(text.casefold().split()).encode(), digest_size=16).digest()


def fill(apps, schema_editor):
    connection = schema_editor.connection
    for table in ("annotate_message", "annotate_corpustext"):
        last = 0
        while True:  # a chunk at a time by id, so memory stays flat
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, text FROM {table} WHERE split <> '' AND split_key IS NULL AND id > %s ORDER BY id LIMIT %s",
                    [last, CHUNK],
                )
                chunk = cursor.fetchall()
                if not chunk:
                    break
                cursor.execute(
                    f"UPDATE {table} t SET split_key = s.key FROM unnest(%s::bigint[], %s::bytea[]) AS s(id, key)"
                    " WHERE t.id = s.id",
                    [[id for id, _ in chunk], [content_digest(text) for _, text in chunk]],
                )
            last = chunk[-1][0]


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0007_contributor_deletions'),
    ]

    operations = [
        migrations.AddField(
            model_name='corpustext',
            name='split_key',
            field=models.BinaryField(blank=True, max_length=16, null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='split_key',
            field=models.BinaryField(blank=True, max_length=16, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=True),
    ]
