"""The demo: its data, its scripted annotators, its rounds and its commands, in one room.

An app of its own (label `demo`) that may import both core apps; `annotate` and `training` never
import it (tests/platform/test_layers.py checks). Its commands: `manage.py demo`, `demo_annotate`,
`demo_rounds`.
"""
