"""Key the imported authors' pseudonyms stored in the database with PSEUDONYM_KEY.

They were `source:` and an unkeyed blake2b of the source's user id, which anyone with the source's
public user ids could recompute. The ids themselves were never stored, so each stored digest is keyed
as it is: annotate.importers.base.source_user_pseudonym keys the same digest of a new import, and an
author imported before and after this keeps one pseudonym.
"""

import hashlib
import hmac
import re

from django.conf import settings
from django.db import migrations

UNKEYED = re.compile(r"^([a-z0-9_-]+):([0-9a-f]{16})$")


def keyed(stored: str) -> str | None:
    # annotate.importers.base.keyed_source_pseudonym, copied: a migration must not change with the app.
    match = UNKEYED.match(stored or "")
    if match is None:
        return None
    source, digest = match.groups()
    mac = hmac.new(settings.PSEUDONYM_KEY.encode(), f"source:{source}:{digest}".encode(), hashlib.sha256)
    return f"{source}:{mac.hexdigest()[:16]}"


def rekey(apps, schema_editor):
    # One value per source user, not per row: the rewrite is one join of each table against the map.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT origin ->> 'source_user' FROM annotate_message WHERE origin ? 'source_user'")
        authors = {old: keyed(old) for (old,) in cursor.fetchall()}
        cursor.execute("SELECT DISTINCT external_annotator FROM annotate_ranking WHERE external_annotator <> ''")
        rankers = {old: keyed(old) for (old,) in cursor.fetchall()}
        authors = {old: new for old, new in authors.items() if new}
        rankers = {old: new for old, new in rankers.items() if new}
        if authors:
            cursor.execute(
                "UPDATE annotate_message m SET origin = jsonb_set(m.origin, '{source_user}', to_jsonb(k.new))"
                " FROM unnest(%s::text[], %s::text[]) AS k(old, new) WHERE m.origin ->> 'source_user' = k.old",
                [list(authors), list(authors.values())],
            )
        if rankers:
            cursor.execute(
                "UPDATE annotate_ranking r SET external_annotator = k.new"
                " FROM unnest(%s::text[], %s::text[]) AS k(old, new) WHERE r.external_annotator = k.old",
                [list(rankers), list(rankers.values())],
            )


class Migration(migrations.Migration):
    dependencies = [("annotate", "0004_remembered_splits")]

    # Not reversible: the unkeyed digests are what this removes.
    operations = [migrations.RunPython(rekey, migrations.RunPython.noop, elidable=True)]
