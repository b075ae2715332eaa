"""Dump a whole project into one versioned archive, and load an archive into a fresh project.

    project_dump(project=project, path="arith.tar.gz", members="pseudonyms")
    project_load(path="arith.tar.gz", name="Arithmetic (restored)")

The archive is a .tar.gz holding `manifest.json` (format, version, how members travel, and each
file's row count and sha256), `people.jsonl` (everyone the rows name) and one JSON Lines file per
project-scoped table (TABLES), rows in the order of their database ids. Ids in the archive are its
own, numbered from 1 per table in that order, and every reference is rewritten to them: foreign
keys, and the ids kept in arrays and JSON (a candidate set's replies, a ranking's tiers, an item's
excluded annotators, a message's import batch, a task's result, the audit log's object ids). A
reference to a row that is gone (the history of a removed member) gets a number after the table's
rows, so it stays one distinct row. Dumping the same data twice therefore writes the same files,
and a project dumped, loaded and dumped again gives the same archive but for `dumped_at`.

People are named by their pseudonym (annotator_pseudonym, or the pseudonym an imported author's
stand-in account carries) or, when the dump is asked for accounts, by username with email and
names; pseudonyms, imported authors' identities and source ids in `origin` travel as data. Snapshot
and model registry rows travel, their files do not (copy the stores for those).

Loading checks the whole archive first (format version, every file present with its sha256, every
table known) and writes everything in one transaction: a refused archive writes nothing.
"""

import base64
import hashlib
import io
import json
import secrets
import tarfile
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, connection, models, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from annotate.importers.base import copy_rows
from annotate.importers.oasst import account_pseudonym, pseudonymous_account
from annotate.models import Project
from training.exporters.rows import annotator_pseudonym

FORMAT = "human-feedback-platform/project-dump"
VERSION = 1
SUPPORTED_VERSIONS = {1}
MEMBER_MODES = ("pseudonyms", "accounts")
USER = settings.AUTH_USER_MODEL
CHUNK = 2000
PARITY = "$id_parity"  # not a field: see Table.keep_parity


@dataclass(frozen=True)
class Table:
    """One project-scoped model in the archive: how its rows are found from the project, and the ids it
    keeps outside foreign keys, each as (field, path into the value, table it points at); a path step
    "*" means every element of a list."""

    scope: str
    refs: tuple = field(default=())
    # Loaded rows get ids of the parity they had: a comparison task shows its replies as A and B in an order
    # drawn from its id's parity (annotate.rules.compare_order), and what was shown as A is part of the record.
    keep_parity: bool = False
    # Fields unique across the installation that a load into the installation the archive came from would
    # repeat, with how to make a new value: a restored invite gets a link of its own there.
    renew: tuple = field(default=())


# Every project-scoped model (tests/training/test_dumps.py finds them through the app registry and fails
# on one missing here). Foreign keys are found from the models; `refs` names the ids they cannot show.
_IMPORT = ("origin", ("import",), "annotate.ImportBatch")
TABLES = {
    "annotate.Project": Table("id"),
    "annotate.HistoricalProject": Table("id"),
    "annotate.ProjectSettings": Table("project"),
    "annotate.HistoricalProjectSettings": Table("project"),
    "annotate.Membership": Table("project"),
    "annotate.HistoricalMembership": Table("project"),
    "annotate.Invite": Table("project", renew=(("token", lambda: secrets.token_urlsafe(24)),)),
    "annotate.HistoricalInvite": Table("project"),
    "annotate.ImportBatch": Table("project"),
    "annotate.ImportJob": Table("project"),
    "annotate.CorpusText": Table("project"),
    "annotate.Message": Table("project", (_IMPORT, ("origin", ("model_version_id",), "training.ModelVersion"))),
    "annotate.CandidateSet": Table("project", (("message_ids", ("*",), "annotate.Message"), _IMPORT)),
    "annotate.WorkItem": Table("project", (("excluded_user_ids", ("*",), USER),)),
    "annotate.Task": Table("project", (
        ("result", ("message_id",), "annotate.Message"), ("result", ("ranking_id",), "annotate.Ranking"),
        ("result", ("label_id",), "annotate.Label"), ("result", ("review_id",), "annotate.Review"),
    ), keep_parity=True),
    "annotate.Ranking": Table("candidate_set__project", (("tiers", ("*", "*"), "annotate.Message"), _IMPORT)),
    "annotate.Label": Table("message__project"),
    "annotate.HistoricalRanking": Table("candidate_set__project"),  # its refs are its ranking's (_references)
    "annotate.HistoricalLabel": Table("message__project"),
    "annotate.Review": Table("message__project"),
    "annotate.ContributorDeletion": Table("project"),
    "annotate.GoldAnswer": Table("project", (("answer", ("tiers", "*", "*"), "annotate.Message"),)),
    "annotate.HistoricalGoldAnswer": Table("project"),
    "annotate.GoldResume": Table("project"),
    "annotate.ScreenSettings": Table("project"),
    "annotate.HistoricalScreenSettings": Table("project"),
    "annotate.ScreenFinding": Table("project", (("model_version_id", (), "training.ModelVersion"),)),
    "training.DatasetSnapshot": Table("project", (("filters", ("annotator_id",), USER),)),
    "training.TrainingRun": Table("project"),
    "training.ModelVersion": Table("project"),
    "training.RunStage": Table("run__project"),
    "training.MetricPoint": Table("stage__run__project"),
    "training.Deployment": Table("project"),
    "training.HistoricalDeployment": Table("project"),
    "training.GenerationJob": Table("project"),
    "training.GenerationJob_versions": Table("generationjob__project"),
    "training.ExportJob": Table("project", (("options", ("filters", "annotator_id"), USER),)),
    "training.GeneratedReply": Table("message__project"),
    "training.ScreenJob": Table("project"),
    "training.ScreenClassifier": Table("project"),
    "training.HistoricalScreenClassifier": Table("project"),
}


class DumpRefused(ValidationError):
    """An archive project_load will not load, with the reason; nothing was written."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__({"archive": [reason]})


def project_scoped_models() -> list:
    """Return every installed model whose rows belong to one project: a foreign key path leads to Project,
    or it is the audit history of such a model (or of Project itself)."""
    found = {Project}

    def leads_to_project(model, seen):
        for f in model._meta.concrete_fields:
            target = f.related_model if f.is_relation else None
            if target is None or target in seen:
                continue
            if target is Project or leads_to_project(target, seen | {target}):
                return True
        return False

    everything = apps.get_models(include_auto_created=True)
    found |= {model for model in everything if leads_to_project(model, {model})}
    found |= {model for model in everything if getattr(model, "instance_type", None) in found}
    return sorted(found, key=lambda model: model._meta.label)


def _tracked(model):
    """The model a simple_history table records, or None."""
    return getattr(model, "instance_type", None)


def _references(model) -> list[tuple[str, tuple, str]]:
    """Every id a row of `model` keeps: its foreign keys, a history row's object id, and TABLES' refs."""
    refs = []
    for f in model._meta.concrete_fields:
        if f.is_relation:
            refs.append((f.attname, (), f.related_model._meta.label))
    tracked = _tracked(model)
    if tracked is not None:
        refs.append(("id", (), tracked._meta.label))
        refs.extend(TABLES[tracked._meta.label].refs)
    return refs + list(TABLES[model._meta.label].refs)


def _remap(value, path: tuple, fn):
    """Return `value` with the ids at `path` replaced by fn(id)."""
    if value is None:
        return None
    if not path:
        return fn(value)
    step, rest = path[0], path[1:]
    if step == "*":
        return [_remap(item, rest, fn) for item in value] if isinstance(value, list) else value
    if isinstance(value, dict) and step in value:
        return {**value, step: _remap(value[step], rest, fn)}
    return value


def _order() -> list[str]:
    """TABLES in an order where every table comes after those it points at (cycles: self references)."""
    done, order = set(), []

    def visit(label, stack):
        if label in done or label in stack:
            return
        for _, _, target in _references(apps.get_model(label)):
            if target in TABLES and target != label:
                visit(target, stack | {label})
        done.add(label)
        order.append(label)

    for label in sorted(TABLES):
        visit(label, frozenset())
    return order


def _file_name(label: str) -> str:
    return f"{label}.jsonl"


def _encode(value):
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot write {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# Dump


class _People:
    """The archive's name for each user the rows reference, and the people file's lines."""

    def __init__(self, project_id: int, members: str):
        self.project_id, self.members = project_id, members
        self.keys: dict[int, str] = {}
        self.lines: dict[str, dict] = {}

    def key(self, user_id: int) -> str:
        if user_id in self.keys:
            return self.keys[user_id]
        user = get_user_model().objects.filter(id=user_id).first()
        line = {}
        if user is None:  # gone from the installation; the audit log or an array still names them
            key = annotator_pseudonym(self.project_id, user_id)
        elif account_pseudonym(user):
            key = account_pseudonym(user)
        elif self.members == "accounts":
            key = user.username
            line["account"] = {"username": user.username, "email": user.email, "first_name": user.first_name,
                               "last_name": user.last_name}
        else:
            key = annotator_pseudonym(self.project_id, user_id)
        self.keys[user_id] = key
        self.lines[key] = {"key": key, **line}
        return key


def project_dump(*, project: Project, path, members: str = "pseudonyms") -> dict:
    """Write the whole project into one .tar.gz archive at `path` (or into a binary file); return its manifest.

    Read in one REPEATABLE READ transaction, so the archive is one moment of the project however long it
    takes, while annotators keep working."""
    if members not in MEMBER_MODES:
        raise ValidationError({"members": f"use one of {', '.join(MEMBER_MODES)}"})
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:  # inside a caller's transaction (a test's), that transaction is the moment
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with tempfile.TemporaryDirectory() as folder:
            manifest = _dump_into(project, Path(folder), members)
            opened = {"fileobj": path} if hasattr(path, "write") else {"name": path}
            with tarfile.open(mode="w:gz", **opened) as archive:
                archive.add(Path(folder) / "manifest.json", arcname="manifest.json")
                for entry in manifest["files"]:
                    archive.add(Path(folder) / entry["name"], arcname=entry["name"])
    return manifest


def _dump_into(project: Project, folder: Path, members: str) -> dict:
    order = _order()
    querysets = {label: apps.get_model(label)._default_manager.filter(**{TABLES[label].scope: project.id})
                 for label in order}
    # The archive's numbers: each table's rows 1..n in id order, then the rows referenced but gone.
    local = {label: {pk: n for n, pk in enumerate(qs.order_by("pk").values_list("pk", flat=True).iterator(), 1)}
             for label, qs in querysets.items()}
    live = {label: len(numbers) for label, numbers in local.items()}
    people = _People(project.id, members)

    def number(target):
        if target == USER:
            return people.key
        numbers = local[target]

        def of(pk):
            if pk not in numbers:
                numbers[pk] = len(numbers) + 1
            return numbers[pk]

        return of

    files = []
    for label in order:
        model = apps.get_model(label)
        names = [f.attname for f in model._meta.concrete_fields]
        refs = [(names.index(model._meta.pk.attname), (), number(label))]
        refs += [(names.index(name), steps, number(target)) for name, steps, target in _references(model)
                 if target == USER or target in TABLES]
        unknown = [name for name, _, target in _references(model) if target != USER and target not in TABLES]
        if unknown:
            raise ValidationError({"dump": f"{label}.{unknown[0]} points outside the project; TABLES has no rule for it"})
        digest, rows = hashlib.sha256(), 0
        with open(folder / _file_name(label), "wb") as out:
            for values in querysets[label].order_by("pk").values_list(*names).iterator(chunk_size=CHUNK):
                values = list(values)
                parity = {PARITY: values[refs[0][0]] % 2} if TABLES[label].keep_parity else {}
                for index, steps, fn in refs:
                    values[index] = _remap(values[index], steps, fn)
                row = {**dict(zip(names, values)), **parity}
                line = orjson.dumps(row, default=_encode, option=orjson.OPT_SORT_KEYS) + b"\n"
                digest.update(line)
                out.write(line)
                rows += 1
        files.append({"name": _file_name(label), "table": label, "rows": rows, "ghosts": len(local[label]) - live[label],
                      "sha256": digest.hexdigest()})
    lines = b"".join(orjson.dumps(people.lines[key], option=orjson.OPT_SORT_KEYS) + b"\n" for key in sorted(people.lines))
    (folder / "people.jsonl").write_bytes(lines)
    files.append({"name": "people.jsonl", "table": USER, "rows": len(people.lines), "ghosts": 0,
                  "sha256": hashlib.sha256(lines).hexdigest()})
    manifest = {"format": FORMAT, "version": VERSION, "members": members, "project": project.name,
                "dumped_at": timezone.now().isoformat(), "files": files}
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return manifest


# ---------------------------------------------------------------------------------------------
# Load


def _read_manifest(archive: tarfile.TarFile) -> dict:
    try:
        manifest = json.load(archive.extractfile("manifest.json"))
    except KeyError:
        raise DumpRefused("no manifest.json: not a project dump") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DumpRefused("manifest.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DumpRefused(f"manifest.json does not describe a {FORMAT} archive")
    if manifest.get("version") not in SUPPORTED_VERSIONS:
        raise DumpRefused(f"format version {manifest.get('version')!r} is not one this installation reads "
                          f"({', '.join(map(str, sorted(SUPPORTED_VERSIONS)))})")
    if manifest.get("members") not in MEMBER_MODES:
        raise DumpRefused(f"members {manifest.get('members')!r} is neither of {', '.join(MEMBER_MODES)}")
    return manifest


def _check(archive: tarfile.TarFile, manifest: dict) -> dict[str, dict]:
    """Return the manifest's files by table once each is there with its sha256 and its table is known."""
    by_table = {}
    entries = manifest.get("files")
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("table"), str)
        and isinstance(entry.get("sha256"), str) and isinstance(entry.get("rows"), int) for entry in entries
    ):
        raise DumpRefused("manifest.json's files are not a list of {name, table, rows, sha256}")
    for entry in entries:
        try:
            stream = archive.extractfile(entry["name"])
        except KeyError:
            raise DumpRefused(f"{entry['name']} is missing from the archive") from None
        digest = hashlib.sha256()
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
        if digest.hexdigest() != entry["sha256"]:
            raise DumpRefused(f"{entry['name']} is corrupt: its sha256 is {digest.hexdigest()}, the manifest says {entry['sha256']}")
        if entry["table"] != USER and entry["table"] not in TABLES:
            raise DumpRefused(f"{entry['name']} holds {entry['table']}, which this installation does not know")
        by_table[entry["table"]] = entry
    missing = sorted((set(TABLES) | {USER}) - set(by_table))
    if missing:
        raise DumpRefused(f"the archive has no file for {', '.join(missing)}")
    return by_table


def _lines(archive, name):
    for number, raw in enumerate(io.BufferedReader(archive.extractfile(name)), 1):
        try:
            yield orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise DumpRefused(f"{name} line {number} is not JSON") from None


class _Ids:
    """New primary keys for one table, taken from its own sequence: the archive's rows 1..n get them in
    order (so the loaded rows keep the archive's order), a reference past n another fresh one."""

    def __init__(self, model, count: int, parities: list[int] | None = None):
        self.table, self.column = model._meta.db_table, model._meta.pk.column
        if parities is None:
            self.ids = {n: pk for n, pk in enumerate(self._take(count), 1)}
            return
        self.ids, free = {}, deque()
        for n, parity in enumerate(parities, 1):  # ascending, each the next free id of the row's parity
            while not free or free[0] % 2 != parity:
                if free:
                    free.popleft()
                else:
                    free.extend(self._take(CHUNK))
            self.ids[n] = free.popleft()

    def _take(self, count: int) -> list[int]:
        if count == 0:
            return []
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                           [self.table, self.column, count])
            return sorted(row[0] for row in cursor.fetchall())

    def of(self, n: int) -> int:
        if n not in self.ids:
            self.ids[n] = self._take(1)[0]
        return self.ids[n]


def _person(line: dict, members: str) -> int:
    account = line.get("account")
    if members == "accounts" and account:
        user, created = get_user_model().objects.get_or_create(
            username=account["username"],
            defaults={"email": account.get("email", ""), "first_name": account.get("first_name", ""),
                      "last_name": account.get("last_name", ""), "is_active": False},
        )
        if created:  # an account of the archive's installation: it signs in once an admin gives it a password
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return user.id
    try:
        return pseudonymous_account(line["key"]).id
    except ValueError as error:
        raise DumpRefused(f"people.jsonl: {error}") from None


def project_load(*, path, name: str | None = None) -> Project:
    """Load an archive written by project_dump into a new project; return it.

    The archive is checked whole before anything is written, and written in one transaction."""
    try:
        archive = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DumpRefused(f"not a .tar.gz archive ({error})") from None
    with archive:
        manifest = _read_manifest(archive)
        files = _check(archive, manifest)
        try:
            with transaction.atomic():
                return _load(archive, manifest, files, name)
        except (IntegrityError, DataError) as error:  # rolled back with everything else
            raise DumpRefused(f"its rows do not fit this installation's tables: {str(error).splitlines()[0]}") from None


def _load(archive, manifest: dict, files: dict, name: str | None) -> Project:
    members = manifest["members"]
    users = {line["key"]: _person(line, members) for line in _lines(archive, files[USER]["name"])}
    order = _order()
    ids = {label: _Ids(apps.get_model(label), files[label]["rows"],
                       [row.get(PARITY, 0) for row in _lines(archive, files[label]["name"])]
                       if TABLES[label].keep_parity else None)
           for label in order}

    def user_of(key):
        if key not in users:
            raise DumpRefused(f"a row names {key!r}, who is not in people.jsonl")
        return users[key]

    for label in order:
        model = apps.get_model(label)
        fields = {f.attname: f for f in model._meta.concrete_fields}
        pk = model._meta.pk.attname
        refs = [(pk, (), ids[label].of)]
        refs += [(attname, steps, user_of if target == USER else ids[target].of)
                 for attname, steps, target in _references(model)]
        buffer, rows = [], 0
        for row in _lines(archive, files[label]["name"]):
            rows += 1
            row.pop(PARITY, None)
            unknown = set(row) - set(fields)
            if unknown:
                raise DumpRefused(f"{files[label]['name']} row {rows}: {label} has no field {sorted(unknown)[0]}")
            for attname, steps, fn in refs:
                if attname in row:
                    row[attname] = _remap(row[attname], steps, fn)
            if label == "annotate.Project" and name:
                row["name"] = name
            buffer.append({attname: _decode(fields[attname], value) for attname, value in row.items()})
            if len(buffer) >= CHUNK:
                _write(model, buffer)
                buffer = []
        _write(model, buffer)
        if rows != files[label]["rows"]:
            raise DumpRefused(f"{files[label]['name']} holds {rows} rows, the manifest says {files[label]['rows']}")
    return Project.objects.get(id=ids["annotate.Project"].of(1))


def _write(model, rows: list[dict]) -> None:
    for name, new in TABLES[model._meta.label].renew:
        taken = set(model._default_manager.filter(**{f"{name}__in": [row[name] for row in rows]})
                    .values_list(name, flat=True))
        for row in rows:
            if row[name] in taken:
                row[name] = new()
    copy_rows(model, rows)


def _decode(field, value):
    if value is None:
        return None
    if isinstance(field, models.BinaryField):
        return base64.b64decode(value)
    if isinstance(field, models.JSONField):
        return Jsonb(value)
    return value
