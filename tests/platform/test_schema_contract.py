"""The API schema is a contract: schemathesis sends every operation of the live schema (/api/schema/) requests
it generates, valid and invalid, as a project admin (not staff) of a small project, and every answer must be
no server error and what the schema says: a documented status, content type, headers and body."""

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from annotate.models import CandidateSet, Message, Role
from annotate.services import accounts
from tests.training.factories import arithmetic_project
from training.models import GenerationJob, JobStatus, ModelKind, ModelVersion
from training.services import serving

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "schemathesis-project-admin-token-0001"
AUTHORIZED = {"Authorization": f"Token {KEY}"}
# Per operation and generation mode (what the schema allows, and what it does not): bounded, and the same
# cases on every run (derandomized, no example database), so that CI stays within about a minute.
EXAMPLES = 8
# The response checks only: the others judge what the API accepts, not whether it answers as documented.
CONFIG = schemathesis.Config.from_dict({
    "generation": {"with-security-parameters": False},
    "checks": {"enabled": False, "not_a_server_error": {"enabled": True}, "status_code_conformance": {"enabled": True},
               "content_type_conformance": {"enabled": True}, "response_schema_conformance": {"enabled": True},
               "response_headers_conformance": {"enabled": True}},
})


@pytest.fixture
def project_admin(make_user, project):
    user = make_user("schemaadmin")
    accounts.membership_set(project=project, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def restore(project, project_admin):
    """Undo what a generated request did to the admin's own access (revoked the token, changed or removed the
    membership), so that every operation is tried as a project admin."""

    def restore_access():
        Token.objects.filter(user=project_admin).exclude(key=KEY).delete()
        Token.objects.get_or_create(user=project_admin, key=KEY)
        accounts.membership_set(project=project, user=project_admin, role=Role.ADMIN)

    restore_access()
    return restore_access


@pytest.fixture
def real_ids(project, project_admin, member, api_as, restore):
    """Ids of real rows for every path parameter: a few prompts with ranked replies, a task leased to the admin,
    an invite, a round, a model version deployed (from a folder that holds no model), a failed generation job."""
    arithmetic_project(project, member, prompts=12, k=2)  # enough for a round to be accepted
    client = api_as(project_admin)
    task = client.post(f"/api/projects/{project.id}/tasks/next/", {}, format="json").json()["task"]
    invite = client.post(f"/api/projects/{project.id}/invites/", {"role": "annotator"}, format="json").json()
    run = client.post(f"/api/projects/{project.id}/runs/create/", {"recipe": "dpo"}, format="json").json()
    version = ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, folder="no-model-here")
    deployment = serving.deployment_create(project=project, model_version=version, by=project_admin)
    job = GenerationJob.objects.create(project=project, status=JobStatus.FAILED, error="a test", requested_by=project_admin)
    root = Message.objects.filter(project=project, parent=None).first()
    return {
        "project_id": project.id, "task_id": task["id"], "invite_id": invite["id"], "token": invite["token"],
        "run_id": run["id"], "version_id": version.id, "deployment_id": deployment.id, "job_id": job.id,
        "root_id": root.id, "message_id": root.id, "set_id": CandidateSet.objects.filter(project=project).first().id,
        "user_id": member.id,
    }


def test_every_operation_answers_what_the_schema_says(real_ids, restore):
    # Hypothesis driven by hand, one operation after another: schemathesis' own pytest loader
    # (schemathesis.pytest.from_fixture) fails under pytest 9.2 ('Function' object has no attribute '_nodeid').
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler(), config=CONFIG, headers=AUTHORIZED)
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Half the cases at the ids of real rows, half at whatever ids are generated (mostly a 404).
        real = {p.name: real_ids[p.name] for p in operation.path_parameters if p.name in real_ids}
        cases = st.one_of(*(operation.as_strategy(mode, path_parameters=ids)
                            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) for ids in (real, {})))

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                             phases=[hypothesis.Phase.generate], suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=cases)
        def answers_as_documented(case):
            restore()
            case.call_and_validate(headers=AUTHORIZED)

        try:
            answers_as_documented()
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - every operation is tried, failures listed together
            failures.append(f"{operation.label}: {error}")
    assert operations >= 55
    assert not failures, f"{len(failures)} of {operations} operations:\n\n" + "\n\n".join(failures)


def test_the_schema_says_lists_are_pages_and_names_the_errors(project_admin, restore, api_as):
    schema = api_as(project_admin).get("/api/schema/?format=json").json()
    lists = [(path, operation) for path, item in schema["paths"].items() for method, operation in item.items()
             if method == "get" and operation["responses"]["200"].get("content", {}).get("application/json", {})
             .get("schema", {}).get("$ref", "").startswith("#/components/schemas/Paginated")]
    assert {path for path, _ in lists} >= {"/api/projects/", "/api/projects/{project_id}/members/",
                                           "/api/projects/{project_id}/runs/", "/api/projects/{project_id}/deployments/"}
    page = schema["components"]["schemas"]["PaginatedProjectOutputList"]
    assert page["required"] == ["count", "next", "previous", "results"] and page["properties"]["results"]["type"] == "array"
    for _, operation in lists:
        bounds = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
        assert bounds["limit"]["maximum"] == 1000 and bounds["offset"]["minimum"] == 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert {"400", "401", "403", "404", "429"} <= set(operation["responses"]), (method, path)
    assert schema["paths"]["/api/projects/{project_id}/chat/reply/"]["post"]["responses"]["429"]["headers"]["Retry-After"]
    assert api_as(project_admin).get("/api/runs/not-a-number/").json() == {"detail": "not found, or not yours to see"}
