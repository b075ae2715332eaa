"""The progress file: one JSON object per line, appended and flushed as training goes.

Only the main process of a run writes (rank 0 under `accelerate launch`), so the job layer
tailing the file sees one stream whatever the number of processes.
"""

import json
import math
import os
import time


def process_rank() -> int:
    """Return this process's global rank as `accelerate launch`/torchrun set it (0 when alone)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _clean(value):
    """Make a value strict JSON: NaN and infinities become null, tensors and numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def numeric(metrics: dict) -> dict:
    """Keep the finite numbers of a metrics dict (what curves and tables can show)."""
    out = {}
    for key, value in metrics.items():
        value = _clean(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


class Progress:
    """Append events to the progress file; silent in every process but the main one."""

    def __init__(self, path: str | None, *, enabled: bool | None = None):
        self.path = path
        self.enabled = bool(path) and (process_rank() == 0 if enabled is None else enabled)

    def emit(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        line = json.dumps(_clean({"event": event, **fields, "time": time.time()}), allow_nan=False)
        # Opened per event in append mode: a line is whole the moment the call returns, and a reader
        # that opens the file at any time never sees a torn line from a buffer.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def start(self, *, stage: str, total: int, **fields) -> None:
        self.emit("start", stage=stage, total=total, **fields)

    def step(self, *, step: int, total: int, metrics: dict | None = None) -> None:
        self.emit("progress", step=step, total=total, metrics=numeric(metrics or {}))

    def checkpoint(self, *, step: int, path: str) -> None:
        self.emit("checkpoint", step=step, path=path)

    def eval(self, metrics: dict) -> None:
        self.emit("eval", metrics=numeric(metrics))

    def done(self, *, out_dir: str, metrics: dict) -> None:
        self.emit("done", out_dir=out_dir, metrics=numeric(metrics))

    def error(self, message: str) -> None:
        self.emit("error", message=message)
