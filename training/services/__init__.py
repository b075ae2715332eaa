"""Writes for training: dataset snapshots, training runs and model versions.

`from training import services` reaches every service; each lives in the module of its thing.
"""

from training.services.snapshots import SFT_FILTERS, snapshot_create, snapshot_export_enqueue  # noqa: F401
