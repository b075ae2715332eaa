"""Where a model directory is written before it is in place: imports nothing heavy, so the web (a base model's
conversion, cancelled from a page) and the trainers share it without the web importing torch."""

from pathlib import Path


def partial_dir(out_dir: Path) -> Path:
    """The sibling folder a model is written to before it is renamed into place (same filesystem)."""
    return out_dir.parent / f".{out_dir.name}.partial"
