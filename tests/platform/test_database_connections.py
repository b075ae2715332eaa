"""How the web holds its database connections: kept across requests with no "SELECT 1" before each, the queue's
hot statements prepared once per connection with generic plans, and a connection that died while idle replaced
without failing the request that finds it dead."""

import psycopg
import pytest
from django.db import connection

from annotate.models import Role
from annotate.services import accounts as account_services
from tests.annotate.factories import ranking_items

# Autocommit, as a web request runs: the test's own transaction would hold the statements (and refuse the retry).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ranking_project(project, member):
    mix = {kind: 0 for kind in ("prompt", "demonstration", "compare", "label", "review")}
    account_services.project_settings_update(project=project, overlap=1, task_mix={**mix, "ranking": 1})
    ranking_items(project, 6)
    return project


def rank_one(api, project, key):
    response = api.post(f"/api/projects/{project.id}/tasks/next/", {}, format="json")
    assert response.status_code == 200, response.content
    task = response.json()["task"]
    assert task is not None
    body = {"submit_key": key, "tiers": [[c["id"]] for c in task["candidates"]]}
    response = api.post(f"/api/tasks/{task['id']}/submit/", body, format="json")
    assert response.status_code == 200, response.content
    return task


def terminate(backend_pid: int) -> None:
    """End the server process behind a connection, as a database restart does."""
    settings = connection.settings_dict
    with psycopg.connect(host=settings["HOST"] or None, port=settings["PORT"] or None, user=settings["USER"],
                         password=settings["PASSWORD"] or None, dbname=settings["NAME"], autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [backend_pid]).fetchone()[0]


def test_a_connection_that_died_while_idle_is_replaced_and_the_request_succeeds(api_as, member, ranking_project):
    api = api_as(member)
    rank_one(api, ranking_project, "before")
    dead = connection.connection.info.backend_pid
    terminate(dead)

    task = rank_one(api, ranking_project, "after")  # the token's query found the connection dead, and asked again

    assert connection.connection.info.backend_pid != dead
    assert task["kind"] == "ranking"


def test_the_lease_is_prepared_once_with_a_generic_plan(api_as, member, ranking_project):
    """A custom plan for a project newer than the table's statistics estimates one open item and sorts all of them
    on every lease; the generic plan walks the priority index and stops at the first item it may have."""
    api = api_as(member)
    for n in range(3):
        rank_one(api, ranking_project, f"k{n}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        prepared = cursor.fetchall()
    lease = [row for row in prepared if "INSERT INTO annotate_task" in row[0] and "slot AS" in row[0]]
    assert lease, [row[0][:80] for row in prepared]
    _, generic, custom = lease[0]
    assert generic >= 2 and custom == 0
    assert any("FROM authtoken_token" in row[0] for row in prepared)  # every API request's first query


def test_a_second_annotator_on_a_new_connection_gets_other_work(api_as, member, make_user, ranking_project):
    """Prepared statements are per connection: a fresh one prepares its own and leases correctly."""
    other = make_user("other")
    account_services.membership_set(project=ranking_project, user=other, role=Role.ANNOTATOR)
    first = rank_one(api_as(member), ranking_project, "a")
    connection.close()
    second = rank_one(api_as(other), ranking_project, "b")
    assert first["id"] != second["id"]
