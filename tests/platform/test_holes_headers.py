"""Debug pages off where the platform serves people, a Content-Security-Policy header on every
response, HSTS over HTTPS in production."""

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver

from tests.helpers import (
    REPO_ROOT,
    child_env,
    free_port,
    run_python,
    stop,
    wait_for_http,
)
from tests.platform.test_settings import LOAD_SETTINGS

pytestmark = pytest.mark.django_db


def routes(patterns, prefix=""):
    """Every route of the platform (admin's own apart), with its project id left to fill in."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if not route.startswith("admin/"):
                yield from routes(pattern.url_patterns, route)
        else:
            yield route


def test_every_page_answers_with_the_content_security_policy_header(owner, project):
    client = Client()
    client.force_login(owner)
    paths = [
        "/" + route.replace("<int:project_id>", str(project.id))
        for route in routes(get_resolver().url_patterns)
        if "<" not in route.replace("<int:project_id>", "")
    ]
    paths += ["/admin/", "/admin/login/", "/api/docs/?script=", "/no/such/page/"]
    assert len(paths) > 40
    anonymous = Client()
    for path in paths:
        for who in (client, anonymous):
            response = who.get(path)
            policy = response.get("Content-Security-Policy", "")
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, (path, response.status_code)
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert "http-equiv" not in page  # one policy, from the settings


def test_the_api_docs_start_swagger_ui_from_a_script_file(owner):
    client = Client()
    client.force_login(owner)
    page = client.get("/api/docs/").content.decode()
    assert "<script>" not in page and "?script=" in page
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript") and b"SwaggerUIBundle" in script.content


def test_hsts_in_production_over_https_only(tmp_path, settings):
    production = {"PLATFORM_ENV": "production", "SECRET_KEY": "k" * 40, "PSEUDONYM_KEY": "p" * 40,
                  "ALLOWED_HOSTS": "example.org"}
    base = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "SECRET_KEY", "DEBUG")}
    base["PLATFORM_DATA_DIR"] = str(tmp_path / "data")
    for variables, seconds in [(production, 31536000), ({**production, "SECURE_HSTS_SECONDS": "600"}, 600),
                               ({}, 0), ({"DEBUG": "false", "SECURE_HSTS_SECONDS": "600"}, 600),
                               ({"DEBUG": "true", "SECURE_HSTS_SECONDS": "600"}, 0)]:
        result = run_python(LOAD_SETTINGS + "print('HSTS', settings.SECURE_HSTS_SECONDS)", env={**base, **variables})
        assert result.returncode == 0, result.stderr
        assert f"HSTS {seconds}" in result.stdout, variables
    settings.SECURE_HSTS_SECONDS = 600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert Client().get("/login/", HTTP_X_FORWARDED_PROTO="https")["Strict-Transport-Security"] == "max-age=600"
    assert "Strict-Transport-Security" not in Client().get("/login/")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_serve_runs_with_debug_off_unless_asked():
    port = free_port()
    env = child_env()
    env.pop("DEBUG", None)
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-worker", "--workers", "1", "--bind", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert b"Log in" in wait_for_http(f"{base}/login/", timeout=120, process=serve)
        assert b"--accent" in wait_for_http(f"{base}/static/annotate/app.css")  # static files without DEBUG
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/no/such/page/", timeout=10)
        body = missing.value.read().decode()
        assert missing.value.code == 404 and "URLconf" not in body and "api/" not in body
        assert "script-src 'self'" in missing.value.headers["Content-Security-Policy"]
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        stop(serve)

