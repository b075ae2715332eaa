"""The platform's configuration: settings, URLs, WSGI/ASGI and the embedded database.

This package lives in the plain folder `platform/`, which entry points put on sys.path.
`platform/` itself must never become a package: it would shadow the standard library's
`platform` module that torch, uuid and Django import.
"""
