"""Write snapshot rows to JSONL files per split, streamed, with row counts and sha256."""

import hashlib
import json
from pathlib import Path


class SplitFiles:
    """One JSONL file per split under `folder`, named `<stem>-<split>.jsonl`."""

    # Rows are joined and written (and hashed) a batch at a time: one encode, write and
    # sha256 update per thousand rows rather than per row, for about a megabyte held per split.
    BATCH = 1000

    def __init__(self, folder: Path, stem: str):
        self.folder, self.stem = folder, stem
        self.handles, self.digests, self.rows, self.pending = {}, {}, {}, {}

    def write(self, split: str, row: dict | str) -> None:
        """Write one row: a dict, or a line of JSON already encoded (without its newline)."""
        pending = self.pending.get(split)
        if pending is None:
            self.handles[split] = (self.folder / f"{self.stem}-{split}.jsonl").open("wb")
            self.digests[split] = hashlib.sha256()
            self.rows[split] = 0
            pending = self.pending[split] = []
        pending.append(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
        if len(pending) >= self.BATCH:
            self._flush(split)

    def _flush(self, split: str) -> None:
        pending = self.pending[split]
        if not pending:
            return
        self.rows[split] += len(pending)
        pending.append("")  # so that the last row ends with its newline too
        data = "\n".join(pending).encode()
        pending.clear()
        self.handles[split].write(data)
        self.digests[split].update(data)

    def paths(self) -> list[Path]:
        return [Path(handle.name) for _, handle in sorted(self.handles.items())]

    def close(self) -> list[dict]:
        """Close the files; return their descriptions (name, split, rows, bytes, sha256)."""
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


def describe(path: Path, *, split: str, rows: int, format: str) -> dict:
    """Describe a file written some other way (its sha256 read back from disk)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "split": split, "rows": rows, "format": format,
            "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
