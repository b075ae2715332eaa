"""Writes for training: dataset snapshots, training runs and model versions.

`from training import services` reaches every service; each lives in the module of its thing.
"""

from training.services.exports import export_enqueue  # noqa: F401
from training.services.snapshots import SFT_FILTERS, snapshot_create  # noqa: F401

# The name the pages and the API have called it by.
snapshot_export_enqueue = export_enqueue
