"""Parquet copies of a snapshot's JSONL files, converted in streamed record batches.

Explicit schemas: a column whose first rows are all null must not be typed as null and then
refuse a later value, and a field a row should not have is an error rather than a new column.

pyarrow (and numpy under it) is imported only when a file is converted: every process that
imports the services (web, workers, a JSONL-only export) would otherwise pay a quarter second.
"""

from functools import cache
from pathlib import Path

BLOCK_BYTES = 8 << 20


@cache
def schemas() -> dict:
    import pyarrow as pa

    turns = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    origin = pa.struct([
        ("message_id", pa.int64()), ("source", pa.string()), ("at", pa.string()), ("annotator", pa.string()),
        ("model_version", pa.string()), ("model_name", pa.string()), ("source_user", pa.string()),
        ("import_id", pa.int64()), ("file", pa.string()), ("line", pa.int64()),
    ])
    conversation = pa.struct([("root_id", pa.int64()), ("reply", origin), ("turns", pa.list_(origin))])
    pair = pa.struct([
        ("root_id", pa.int64()), ("candidate_set_id", pa.int64()), ("ranking_id", pa.int64()),
        ("annotator", pa.string()), ("imported", pa.bool_()), ("guideline_version", pa.int64()),
        ("at", pa.string()), ("import_id", pa.int64()), ("file", pa.string()), ("line", pa.int64()),
        ("chosen", origin), ("rejected", origin),
    ])
    return {
        "sft": pa.schema([("messages", turns), ("provenance", conversation)]),
        "sft_completion": pa.schema([("prompt", turns), ("completion", turns), ("provenance", conversation)]),
        "preference": pa.schema([
            ("prompt", turns), ("chosen", turns), ("rejected", turns), ("margin", pa.int64()), ("provenance", pair),
        ]),
        "implicit_pairs": pa.schema([("chosen", turns), ("rejected", turns), ("margin", pa.int64()), ("provenance", pair)]),
        "unpaired": pa.schema([
            ("prompt", turns), ("completion", turns), ("label", pa.bool_()),
            ("provenance", pa.struct([
                ("root_id", pa.int64()), ("reply", origin), ("message_ids", pa.list_(pa.int64())),
                ("settled_by", pa.string()),
                ("judgements", pa.list_(pa.struct([
                    ("kind", pa.string()), ("desirable", pa.bool_()), ("message_id", pa.int64()),
                    ("annotator", pa.string()), ("imported", pa.bool_()), ("at", pa.string()),
                    ("guideline_version", pa.int64()), ("ranking_id", pa.int64()), ("quality", pa.int64()),
                ]))),
            ])),
        ]),
        "prompts": pa.schema([
            ("prompt", turns),
            ("provenance", pa.struct([("root_id", pa.int64()), ("message_id", pa.int64()), ("turns", pa.list_(origin))])),
        ]),
        "pretraining": pa.schema([
            ("text", pa.string()),
            ("provenance", pa.struct([
                ("document_id", pa.int64()), ("import_id", pa.int64()), ("file", pa.string()), ("at", pa.string()),
            ])),
        ]),
        "flags": pa.schema([
            ("text", pa.string()), ("label", pa.bool_()), ("flags", pa.string()),
            ("provenance", pa.struct([("root_id", pa.int64()), ("role", pa.string()), ("labels", pa.int64()),
                                      ("message", origin)])),
        ]),
        # The side files of a preference snapshot: never converted, but their card names these features.
        "rankings": pa.schema([
            ("candidate_set_id", pa.int64()), ("ranking_id", pa.int64()), ("annotator", pa.string()),
            ("imported", pa.bool_()), ("tiers", pa.list_(pa.list_(pa.int64()))), ("all_bad", pa.bool_()),
            ("guideline_version", pa.int64()), ("at", pa.string()),
            ("import_id", pa.int64()), ("file", pa.string()), ("line", pa.int64()),
        ]),
        # `weighted_order`: ranked pairs with each ranking counting its annotator's weight (annotate.consensus).
        "consensus": pa.schema([
            ("candidate_set_id", pa.int64()), ("order", pa.list_(pa.int64())), ("rankings", pa.int64()),
            ("weighted_order", pa.list_(pa.int64())),
            ("weights", pa.list_(pa.struct([("annotator", pa.string()), ("weight", pa.float64())]))),
        ]),
    }


def empty_filled(row: dict, kind: str) -> dict:
    """The row with every null replaced by its field's empty value: "" for text, 0 for a number, false, [] or a
    struct of empty values, as the kind's schema types the field.

    `datasets` types each JSON file (each 10 MB of one) by the values it sees: a field that is null in every row
    of the train file (no imported message in train, so no import id) is typed null, and the test file's ids
    then fail to cast; the card's features would fix it, but the raw files must load alone. So no exported
    field is ever null (an id of 0 and an empty name mean "none"). Rows only: the same trouble with a list empty
    in every row is kept out of the schemas (no list that can be empty in every row of a split).
    """
    return _filled(row, _plan(kind))


def _filled(value: dict, plan: dict) -> dict:
    for name, (empty, inner, is_list) in plan.items():
        found = value.get(name)
        if found is None:
            value[name] = empty()
        elif inner is not None:
            if is_list:
                for item in found:
                    _filled(item, inner)
            else:
                _filled(found, inner)
    return value


@cache
def _plan(kind: str) -> dict:
    """Per field of the kind's schema: a maker of its empty value, the plan of the struct inside it (or None),
    and whether that struct is in a list."""
    import pyarrow as pa

    def plan_of(fields) -> dict:
        return {field.name: entry(field.type) for field in fields}

    def empty_of(type):
        if pa.types.is_struct(type):
            inner = plan_of(type)
            return lambda: _filled({}, inner)
        if pa.types.is_list(type):
            return list
        value = {pa.string(): "", pa.int64(): 0, pa.bool_(): False, pa.float64(): 0.0}[type]
        return lambda: value

    def entry(type):
        if pa.types.is_struct(type):
            return empty_of(type), plan_of(type), False
        if pa.types.is_list(type) and pa.types.is_struct(type.value_type):
            return list, plan_of(type.value_type), True
        return empty_of(type), None, False

    return plan_of(schemas()[kind])


def jsonl_to_parquet(source: Path, kind: str) -> Path:
    """Write `source` (.jsonl) as Parquet beside it; memory holds one block at a time."""
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    schema = schemas()[kind]
    target = source.with_suffix(".parquet")
    if source.stat().st_size == 0:
        # An empty split: a file with the schema and no row group. pyarrow's JSON reader refuses an empty
        # file, and `datasets` fails on a row group of 0 rows (it asks for batches of that size).
        pq.ParquetWriter(target, schema).close()
        return target
    reader = pa_json.open_json(
        source,
        read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES),
        parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )
    with pq.ParquetWriter(target, schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
    return target
