"""A snapshot's dataset card: the README.md beside its files that lets `datasets.load_dataset(folder)` open it.

The YAML header is what `datasets` and the Hugging Face hub read: `configs` (which file holds each split),
`dataset_info` (the features and each split's row count, which `load_dataset` checks against the files) and
`license`. Under `snapshot` it records how the snapshot was made: project, kind, version, filters, the guideline
versions its judgements were made under, the platform's version, every split's row count, each file's sha256,
and the sources of the project's data with a licence each. The body says the same for a person.

A split with no rows keeps its (empty) file, but is left out of `configs`: `datasets` 5.2 refuses to load a
DatasetDict with a split of no rows ('Instruction "test" corresponds to no data!', huggingface/datasets#8401),
so listing it would make `load_dataset(folder)` fail for the splits that do have rows.

The card is written with PyYAML alone: importing `datasets` would cost every export a second and 80 MB.
"""

import importlib.metadata
from functools import cache
from pathlib import Path

import yaml
from django.conf import settings
from django.db.models import Count
from django.db.models.fields.json import KT

from annotate.models import CorpusText, ImportBatch, Label, Message, MessageRole, MessageSource, Ranking, Review
from training.exporters.parquet import schemas

CARD_NAME = "README.md"
# The side files of a preference snapshot (either form), each a config of its own beside the pairs.
SIDE_FILES = {"preference": ("rankings", "consensus"), "implicit_pairs": ("rankings", "consensus")}
LIBRARIES = ("django", "trl", "transformers", "datasets", "pyarrow")
UNKNOWN_LICENSE = "unknown"


def card_write(*, folder: Path, project, kind: str, version: int, filters: dict, counts: dict, files: list[dict],
               created_at, redacted: dict | None = None) -> Path:
    """Write the card of a snapshot whose files (`files`, as SplitFiles describes them) are in `folder`;
    `redacted` counts, per kind, the spans the content screen's findings replaced in what it wrote."""
    sources = _sources(project, kind)
    licenses = sorted({source["license"] for source in sources}) or [settings.SNAPSHOT_LICENSE]
    made = {
        "project": {"id": project.id, "name": project.name},
        "kind": kind,
        "version": version,
        "created_at": created_at.isoformat(),
        "filters": filters,
        "rows": dict(sorted(counts.items(), key=lambda item: item[0] != "train")),
        "guideline_versions": {"current": project.guideline_version, "judged_under": _guideline_versions(project, kind)},
        "platform_version": platform_version(),
        "excluded_messages": Message.objects.filter(project=project, excluded=True).count(),
        "screen": _screen(project, redacted or {}),
        "sources": sources,
        "files": [{key: item[key] for key in ("name", "split", "rows", "format", "bytes", "sha256")} for item in files],
    }
    header = _header(kind, files, licenses=licenses, pretty_name=f"{project.name}: {kind} v{version}")
    header["snapshot"] = made
    text = "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + _body(made, header)
    path = folder / CARD_NAME
    path.write_text(text, encoding="utf-8")
    return path


def card_read(folder: Path) -> dict:
    """The YAML header of the card in `folder`."""
    text = (folder / CARD_NAME).read_text(encoding="utf-8")
    _, header, _ = text.split("---\n", 2)
    return yaml.safe_load(header)


def _header(kind: str, files: list[dict], *, licenses: list[str], pretty_name: str) -> dict:
    """The part of the YAML that `datasets` and the hub read."""
    configs, infos = [], []
    for stem in (kind, *SIDE_FILES.get(kind, ())):
        # The JSONL files, even where Parquet copies were written: `datasets` picks one loader for the whole
        # folder from its commonest file type, and the side files are JSONL only. The card's features type them.
        loaded = sorted((item for item in files if item["name"].startswith(f"{stem}-") and item["format"] == "jsonl"
                         and item["rows"]), key=lambda item: item["split"] != "train")
        name = "default" if stem == kind else stem
        configs.append({"config_name": name, **({"default": True} if stem == kind else {}),
                        "data_files": [{"split": item["split"], "path": item["name"]} for item in loaded]})
        infos.append({
            "config_name": name,
            "features": [_feature(field.name, field.type) for field in schemas()[stem]],
            # num_bytes is the file's size: `datasets` means the Arrow table's, which an export never measures
            # and `load_dataset` never checks, but it ignores every split's count (which it checks) if one
            # has none.
            "splits": [{"name": item["split"], "num_bytes": item["bytes"], "num_examples": item["rows"]}
                       for item in loaded],
        })
    return {"license": licenses[0] if len(licenses) == 1 else licenses, "pretty_name": pretty_name,
            "configs": configs, "dataset_info": infos}


def _feature(name: str | None, type) -> dict:
    """A column's type as `datasets` writes features in a card (Features._to_yaml_list): written here from the
    Parquet schema rather than by `datasets`, whose import costs an export a second and 80 MB."""
    import pyarrow as pa

    described = {} if name is None else {"name": name}
    if pa.types.is_struct(type):
        return described | {"struct": [_feature(type.field(i).name, type.field(i).type) for i in range(type.num_fields)]}
    if pa.types.is_list(type):
        inner = _feature(None, type.value_type)
        # A list of structs lists their fields; a list of plain values names their dtype alone.
        return described | {"list": inner.get("struct", inner.get("dtype", inner))}
    dtype = {pa.string(): "string", pa.int64(): "int64", pa.bool_(): "bool", pa.float64(): "float64"}[type]
    return described | {"dtype": dtype}


def _sources(project, kind: str) -> list[dict]:
    """Where the project's data of this kind came from, with a licence each: the platform's own annotators
    and models (settings.SNAPSHOT_LICENSE), and each import batch (the licence its importer named, else unknown)."""
    batches = {batch.id: batch for batch in ImportBatch.objects.filter(project=project)}
    found = []
    if kind == "pretraining":
        counted = CorpusText.objects.filter(project=project).values("batch_id").annotate(n=Count("id")).order_by("batch_id")
        for row in counted:
            found.append(_imported(batches.get(row["batch_id"]), row["batch_id"], texts=row["n"]))
        return found
    counted = (Message.objects.filter(project=project).values("source", batch=KT("origin__import"))
               .annotate(n=Count("id")).order_by("source", "batch"))
    for row in counted:
        if row["source"] == MessageSource.IMPORT:
            batch_id = int(row["batch"]) if row["batch"] else None
            found.append(_imported(batches.get(batch_id), batch_id, messages=row["n"]))
        else:
            found.append({"source": row["source"], "messages": row["n"], "license": settings.SNAPSHOT_LICENSE})
    return found


def _imported(batch, batch_id, **counts) -> dict:
    described = {"source": "import", "import_id": batch_id, **counts, "license": UNKNOWN_LICENSE}
    if batch is not None:
        described |= {"file": batch.filename, "format": batch.format, "sha256": batch.sha256,
                      "license": batch.license or UNKNOWN_LICENSE}
    return described


def _screen(project, redacted: dict) -> dict | None:
    """What the content screen did to this snapshot, where a screen exists (it was ever on, or left findings):
    spans redacted per kind, and the messages it holds out of every export. None where there is no screen."""
    from annotate.models import ScreenFinding, ScreenSettings
    from annotate.services.screening import HELD_PREFIX

    settings_row = ScreenSettings.objects.filter(project=project).first()
    if not redacted and not ScreenFinding.objects.filter(project=project).exists() and not (settings_row and settings_row.enabled):
        return None
    return {"enabled": bool(settings_row and settings_row.enabled), "redacted": dict(sorted(redacted.items())),
            "held_messages": Message.objects.filter(project=project, excluded=True,
                                                    excluded_reason__startswith=HELD_PREFIX).count()}


def _guideline_versions(project, kind: str) -> list[int]:
    """The guideline versions recorded on the project's judgements that this kind exports."""
    rankings = Ranking.objects.filter(candidate_set__project=project).values_list("guideline_version", flat=True)
    labels = Label.objects.filter(message__project=project).values_list("guideline_version", flat=True)
    reviews = Review.objects.filter(message__project=project).values_list("guideline_version", flat=True)
    messages = Message.objects.filter(project=project)
    demonstrations = [messages.filter(role=MessageRole.ASSISTANT).values_list("guideline_version", flat=True), reviews,
                      labels]
    by_kind = {
        "preference": [rankings],
        "implicit_pairs": [rankings],
        "unpaired": [rankings, labels, reviews],
        "sft": demonstrations,
        "sft_completion": demonstrations,
        "prompts": [messages.filter(role=MessageRole.USER).values_list("guideline_version", flat=True)],
        "pretraining": [],
        "flags": [labels],
    }
    versions = set()
    for values in by_kind[kind]:
        versions |= set(values.exclude(guideline_version=None).distinct())
    return sorted(versions)


@cache
def platform_version() -> dict:
    """The checkout's commit (read from .git, no git binary needed) and the versions of the libraries that
    wrote and will read the files."""
    found = {"commit": _commit(Path(settings.BASE_DIR) / ".git")}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _commit(git: Path) -> str | None:
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        pass  # not a checkout (an installed copy, or .git is a worktree's file): no commit to name
    return None


def _screen_lines(screen: dict | None) -> list[str]:
    if screen is None:
        return []
    redacted = ", ".join(f"{kind} {n}" for kind, n in screen["redacted"].items()) or "none"
    return [f"- content screen ({'on' if screen['enabled'] else 'off'}): spans redacted as placeholders such as "
            f"{{{{EMAIL_1}}}}: {redacted}; messages it holds out of every export: {screen['held_messages']}"]


# The one kind that carries what every other export leaves out: said first in its card, since it is not for publishing.
FLAGS_WARNING = {"flags": [
    "**Not for publishing.** This kind is what the screen classifier trains on: every message annotators labelled, "
    "with the text they flagged toxic, spam or off task, including messages excluded from every other export.",
    "",
]}


def _body(made: dict, header: dict) -> str:
    kind, project = made["kind"], made["project"]
    configs = header["configs"]
    lines = [
        f"# {header['pretty_name']}",
        "",
        f"A {kind} snapshot of the project \"{project['name']}\" (id {project['id']}), version {made['version']}, "
        f"exported {made['created_at']}. Rows are in the format TRL reads for this kind; each row's `provenance` "
        "says where it came from, with pseudonymous annotator ids.",
        "",
        *FLAGS_WARNING.get(kind, []),
        "| split | rows |",
        "| --- | --- |",
        *(f"| {split} | {rows} |" for split, rows in sorted(made["rows"].items(), key=lambda item: item[0] != "train")),
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        "",
        "snapshot = datasets.load_dataset(\"path/to/this/folder\")",
    ]
    lines += [f"{config['config_name']} = datasets.load_dataset(\"path/to/this/folder\", \"{config['config_name']}\")"
              for config in configs if config["config_name"] != "default"]
    lines += ["```", ""]
    empty = sorted(split for split, rows in made["rows"].items() if not rows)
    if empty:
        lines += [
            f"The split{'s' if len(empty) > 1 else ''} {', '.join(empty)} has no rows: its files are here, empty, but "
            "are not listed in the configs, since `datasets` refuses to load a split of no rows. "
            "`load_dataset(\"json\", data_files={...}, streaming=True)` reads them.",
            "",
        ]
    lines += [
        "## How it was made",
        "",
        f"- filters: {made['filters'] or 'none'}",
        f"- guideline versions: current {made['guideline_versions']['current']}, judgements made under "
        f"{made['guideline_versions']['judged_under'] or 'none recorded'}",
        f"- messages excluded from every export (flagged or rejected): {made['excluded_messages']}",
        *_screen_lines(made["screen"]),
        f"- platform: {', '.join(f'{name} {value}' for name, value in made['platform_version'].items() if value)}",
        "",
        "## Sources and licences",
        "",
        "| source | count | licence |",
        "| --- | --- | --- |",
    ]
    for source in made["sources"]:
        what = source["source"]
        if source["source"] == "import":
            what += f" {source['file']}" if source.get("file") else " (no import batch recorded)"
        count = source.get("messages", source.get("texts"))
        what = what.replace("|", "\\|")  # a file name may hold a |, which would end the cell
        lines.append(f"| {what} | {count} | {source['license']} |")
    lines += [
        "",
        "## Files",
        "",
        "| file | split | rows | sha256 |",
        "| --- | --- | --- | --- |",
        *(f"| {item['name']} | {item['split']} | {item['rows']} | `{item['sha256']}` |" for item in made["files"]),
        "",
    ]
    return "\n".join(lines)
