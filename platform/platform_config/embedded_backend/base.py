"""Django's PostgreSQL backend, pointed at the embedded server, which starts on first connect."""

from django.db.backends.postgresql import base

from platform_config import embedded_db


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        # The socket folder and port are only known once the server runs, so they are filled
        # in here rather than in settings: importing settings must not start a server.
        if self.settings_dict["NAME"] in (None, "", "postgres") or self.settings_dict["NAME"].startswith("test_"):
            # The "postgres" database always exists; test databases are made by the test runner.
            self.settings_dict.update(embedded_db.ensure_running())
        else:
            self.settings_dict.update(embedded_db.ensure_database(self.settings_dict["NAME"]))
        return super().get_connection_params()
