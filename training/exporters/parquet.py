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
            ("text", pa.string()), ("label", pa.bool_()), ("flags", pa.list_(pa.string())),
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
