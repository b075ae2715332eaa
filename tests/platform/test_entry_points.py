"""`platform/` is a plain folder: every entry point must still import the standard `platform`."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, child_env, free_port, stop, wait_for_http

STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
CHECK = (
    "import platform, pathlib, sysconfig\n"
    "where = pathlib.Path(platform.__file__).resolve().parent\n"
    "assert where == pathlib.Path(sysconfig.get_paths()['stdlib']).resolve(), platform.__file__\n"
    "print('stdlib platform', platform.python_version(), platform.system())\n"
)


def test_platform_folder_is_not_a_package():
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()


def test_pytest_imports_the_standard_platform_module():
    import platform

    assert Path(platform.__file__).resolve().parent == STDLIB
    assert platform.python_version().startswith("3.")


def test_manage_py_imports_the_standard_platform_module():
    # The job worker is `manage.py procrastinate worker`, so this covers the worker's path too.
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", CHECK],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "stdlib platform" in result.stdout


def test_wsgi_imports_the_standard_platform_module(tmp_path):
    # As gunicorn does: read its config's pythonpath, then import the WSGI module, from elsewhere.
    code = (
        "import runpy, sys\n"
        f"config = runpy.run_path({str(REPO_ROOT / 'platform' / 'gunicorn.conf.py')!r})\n"
        "sys.path[:0] = config['pythonpath'].split(',')\n"
        "import platform_config.wsgi\n" + CHECK
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "stdlib platform" in result.stdout


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_pages_health_and_static_files():
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py"],
        cwd=REPO_ROOT,
        env=child_env(BIND=f"127.0.0.1:{port}", WEB_WORKERS="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        health = wait_for_http(f"http://127.0.0.1:{port}/health/", process=web)
        assert b'"database": {"ok": true' in health
        login = wait_for_http(f"http://127.0.0.1:{port}/login/")
        assert b"Log in" in login
        css = wait_for_http(f"http://127.0.0.1:{port}/static/annotate/app.css")
        assert b"--accent" in css
    finally:
        stop(web)
