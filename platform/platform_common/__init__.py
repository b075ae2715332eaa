"""Pieces both apps use: the errors services raise and the API's handler for them, the raw-SQL row
loader, and the timestamped model base. It imports neither app (tests/platform/test_layers.py checks)."""
