"""Settings come from the environment; a bad value stops the start and names the variable."""

import os

from tests.helpers import run_python

LOAD_SETTINGS = (
    "import sys; sys.path[:0] = ['platform', '.']\n"
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'platform_config.settings'\n"
    "from django.conf import settings\n"
    "print('DEBUG', settings.DEBUG); print('KEY', settings.SECRET_KEY)\n"
    "print('DB', settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['NAME'])\n"
    "print('OPTIONS', sorted(settings.DATABASES['default']['OPTIONS'].items()))\n"
)


def load(tmp_path, **variables):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "SECRET_KEY", "PSEUDONYM_KEY")}
    env["PLATFORM_DATA_DIR"] = str(tmp_path / "data")
    env.update(variables)
    return run_python(LOAD_SETTINGS, env=env)


def test_development_is_the_default_and_generates_a_secret_key_once(tmp_path):
    first = load(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "DEBUG True" in first.stdout
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.exists()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert f"KEY {key_file.read_text().strip()}" in first.stdout
    second = load(tmp_path)
    assert second.stdout == first.stdout  # the same key across restarts: sessions survive


def test_no_database_url_means_the_embedded_server(tmp_path):
    result = load(tmp_path)
    assert "DB platform_config.embedded_backend platform" in result.stdout


def test_production_requires_a_secret_key(tmp_path):
    result = load(tmp_path, PLATFORM_ENV="production", ALLOWED_HOSTS="example.org")
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when PLATFORM_ENV=production" in result.stderr


def test_production_requires_allowed_hosts(tmp_path):
    result = load(tmp_path, PLATFORM_ENV="production", SECRET_KEY="k" * 40)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


def test_production_refuses_debug(tmp_path):
    result = load(tmp_path, PLATFORM_ENV="production", SECRET_KEY="k" * 40, ALLOWED_HOSTS="x", DEBUG="true")
    assert "DEBUG must be false" in result.stderr


def test_production_with_every_secret_starts(tmp_path):
    result = load(
        tmp_path,
        PLATFORM_ENV="production",
        SECRET_KEY="k" * 40,
        PSEUDONYM_KEY="p" * 40,
        ALLOWED_HOSTS="example.org",
        DATABASE_URL="postgres://app:s3cret@db.internal:6543/feedback",
    )
    assert result.returncode == 0, result.stderr
    assert "DEBUG False" in result.stdout
    assert "DB django.db.backends.postgresql feedback" in result.stdout
    assert not (tmp_path / "data" / "secret_key").exists()


def test_bad_values_name_the_variable(tmp_path):
    cases = {
        "PLATFORM_ENV": ("staging", "PLATFORM_ENV must be one of development, production"),
        "DATABASE_URL": ("mysql://root@localhost/x", "DATABASE_URL must start with postgres://"),
        "DEBUG": ("maybe", "DEBUG must be true or false"),
        "CONN_MAX_AGE": ("soon", "CONN_MAX_AGE must be a whole number"),
        "DATABASE_PREPARED_STATEMENTS": ("sometimes", "DATABASE_PREPARED_STATEMENTS must be true or false"),
        "DATABASE_HEALTH_CHECKS": ("often", "DATABASE_HEALTH_CHECKS must be true or false"),
    }
    for variable, (value, message) in cases.items():
        result = load(tmp_path, **{variable: value})
        assert result.returncode != 0, variable
        assert message in result.stderr, (variable, result.stderr[-500:])


def test_prepared_statements_are_on_unless_a_pooler_needs_them_off(tmp_path):
    url = "postgres://app@db.internal:6543/feedback?options=-c%20statement_timeout%3D5000"
    on = load(tmp_path, DATABASE_URL=url)
    assert on.returncode == 0, on.stderr
    assert "('options', '-c statement_timeout=5000 -c plan_cache_mode=force_generic_plan')" in on.stdout
    assert "('prepare_threshold', 1)" in on.stdout
    off = load(tmp_path, DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="0")
    assert "('options', '-c statement_timeout=5000')" in off.stdout and "('prepare_threshold', None)" in off.stdout


def test_database_url_without_a_name_is_refused(tmp_path):
    result = load(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432")
    assert "DATABASE_URL must name a database" in result.stderr
