"""Write snapshot rows to JSONL files per split, streamed, with row counts and sha256.

Rows are encoded by orjson, a few times faster than json.dumps: strings come out as
json.dumps(row, ensure_ascii=False) writes them (UTF-8; only quotes, backslashes and control
characters escaped), with no space after "," and ":".
"""

import hashlib
from pathlib import Path

import orjson

from training.exporters.parquet import empty_filled


class SplitFiles:
    """One JSONL file per split under `folder`, named `<stem>-<split>.jsonl`.

    Every split named in `splits` gets its file, empty when no row went to it, so a reader that names
    each split's file (`load_dataset("json", data_files={"train": ..., "test": ...})`) finds them all.
    """

    # Rows are written (and hashed) a megabyte at a time: one write and sha256 update per
    # thousand rows or so, rather than per row.
    BUFFER_BYTES = 1 << 20

    def __init__(self, folder: Path, stem: str, splits: tuple[str, ...] = ()):
        # `stem` is also the schema (parquet.schemas) by which a null in a row is written as its empty value.
        self.folder, self.stem, self.splits = folder, stem, splits
        self.handles, self.digests, self.rows, self.pending = {}, {}, {}, {}

    def write(self, split: str, row: dict) -> None:
        """Write one row as a line of JSON."""
        pending = self.pending.get(split)
        if pending is None:
            pending = self._open(split)
        # Appended to one buffer, not held as a bytes object per row: a thousand rows alive at
        # once fragment the heap, for 20 MB more at a million pairs.
        line = orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        if b"null" in line:  # rare in most kinds' rows (or in a text), so the common row costs one byte search
            line = orjson.dumps(empty_filled(row, self.stem), option=orjson.OPT_APPEND_NEWLINE)
        pending += line
        self.rows[split] += 1
        if len(pending) >= self.BUFFER_BYTES:
            self._flush(split)

    def _open(self, split: str) -> bytearray:
        self.handles[split] = (self.folder / f"{self.stem}-{split}.jsonl").open("wb")
        self.digests[split] = hashlib.sha256()
        self.rows[split] = 0
        pending = self.pending[split] = bytearray()
        return pending

    def _flush(self, split: str) -> None:
        pending = self.pending[split]
        self.handles[split].write(pending)
        self.digests[split].update(pending)
        pending.clear()

    def paths(self) -> list[Path]:
        self._open_missing()
        return [Path(handle.name) for _, handle in sorted(self.handles.items())]

    def _open_missing(self) -> None:
        for split in self.splits:
            if split not in self.handles:
                self._open(split)

    def close(self) -> list[dict]:
        """Close the files; return their descriptions (name, split, rows, bytes, sha256)."""
        self._open_missing()
        described = []
        for split, handle in sorted(self.handles.items()):
            self._flush(split)
            handle.close()
            path = Path(handle.name)
            described.append({
                "name": path.name, "split": split, "rows": self.rows[split], "format": "jsonl",
                "bytes": path.stat().st_size, "sha256": self.digests[split].hexdigest(),
            })
        return described


def describe(path: Path, *, split: str | None, rows: int | None, format: str) -> dict:
    """Describe a file written some other way (its sha256 read back from disk); the card has no split."""
    return {"name": path.name, "split": split, "rows": rows, "format": format,
            "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def sha256_of(path: Path) -> str:
    """The file's sha256, read a megabyte at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
