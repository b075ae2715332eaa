"""Remember the split of every root prompt and document there is, by the rule that decided it until now.

Exports used to split by a seeded hash of the root message id (or document id); from now on the content
decides (training.exporters.rows.Splits) for whatever has no remembered split. Any root that exists now may
have been exported, and annotate cannot see training's snapshots, so every one keeps the split the old rule
gave it: a prompt that was held out stays held out.
"""

import hashlib

from django.conf import settings
from django.db import migrations, models

CHUNK = 10_000


def old_rule_is_heldout(project_id: int, key: int) -> bool:
    # training.exporters.rows.is_heldout as it was (10% held out), copied: a migration must not change with the app.
    digest = hashlib.sha256(f"heldout:{project_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < 10


def remember(apps, schema_editor):
    connection = schema_editor.connection
    for table, only_roots in (("annotate_message", " AND parent_id IS NULL"), ("annotate_corpustext", "")):
        last = 0
        while True:  # a chunk at a time by id, so memory stays flat however many roots there are
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, project_id FROM {table} WHERE split = '' AND id > %s{only_roots} ORDER BY id LIMIT %s",
                    [last, CHUNK],
                )
                chunk = cursor.fetchall()
                if not chunk:
                    break
                splits = ["test" if old_rule_is_heldout(project_id, id) else "train" for id, project_id in chunk]
                cursor.execute(
                    f"UPDATE {table} t SET split = s.split FROM unnest(%s::bigint[], %s::text[]) AS s(id, split)"
                    " WHERE t.id = s.id",
                    [[id for id, _ in chunk], splits],
                )
            last = chunk[-1][0]


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0003_audit_history'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='corpustext',
            name='split',
            field=models.CharField(blank=True, choices=[('train', 'Train'), ('test', 'Test (held out)')], max_length=8),
        ),
        migrations.AddField(
            model_name='message',
            name='split',
            field=models.CharField(blank=True, choices=[('train', 'Train'), ('test', 'Test (held out)')], max_length=8),
        ),
        migrations.AddConstraint(
            model_name='corpustext',
            constraint=models.CheckConstraint(condition=models.Q(('split', ''), ('split__in', ['train', 'test']), _connector='OR'), name='corpustext_split_valid'),
        ),
        migrations.AddConstraint(
            model_name='message',
            constraint=models.CheckConstraint(condition=models.Q(('split', ''), ('split__in', ['train', 'test']), _connector='OR'), name='message_split_valid'),
        ),
        migrations.RunPython(remember, migrations.RunPython.noop, elidable=True),
    ]
