"""Browser tests: Playwright's sync API driving Debian's Chromium against pytest-django's live
server. They act as a person does, through the keyboard and the mouse only."""

import os

import pytest
from django.db import connections
from django.urls import get_resolver
from playwright.sync_api import sync_playwright

from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS, chromium_problem
from tests.helpers import REPO_ROOT

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module. Not per session: while Playwright runs, the thread has an
    event loop, and Django refuses database calls from the later, non-browser tests."""
    problem = chromium_problem()
    if problem:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"the browser tests must run on CI, but there is no Chromium: {problem}")
        pytest.skip(f"no Chromium for the browser tests: {problem}")
    # Load every view before the first page is asked for: the URLconf imports training's views and
    # with them torch and transformers (5 s on a quiet machine), which under load made the first
    # page of a module outlast Playwright's 10 s timeout.
    get_resolver().url_patterns
    # Playwright's sync API keeps an event loop in this thread; the tests' own database calls
    # (and pytest-django's flush after each test) are still plain synchronous code.
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            yield browser
            browser.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture(autouse=True, scope="module")
def close_connections_after_each_request():
    """The live server answers each request in a new thread; with persistent connections
    (CONN_MAX_AGE) each thread would leave one open, and the test database could not be dropped
    at the end. Connection wrappers share this settings dict, so the change reaches them all."""
    database = connections.settings["default"]
    before = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    yield
    database["CONN_MAX_AGE"] = before


@pytest.fixture(autouse=True)
def browser_test_settings(settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


@pytest.fixture
def new_page(browser, live_server):
    """Open a fresh browser window (its own cookies and storage) on the live server."""
    contexts = []

    def open_window():
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_window
    for context in contexts:
        context.close()


@pytest.fixture
def shot():
    """Save a full-page screenshot under test-artifacts/screenshots/ (ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str):
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

    return save
