"""Server-side requests a project admin could aim anywhere (an openai backend at loopback or a metadata
service), answers that echoed a server's text, chat failures that were 500s, and chat and generation
without a rate limit."""

import http.server
import json
import socket
import threading

import pytest
from django.core.cache import caches

from annotate.models import Message, Role
from annotate.services import accounts, tree
from training.models import Deployment, GenerationJob, ModelKind, ModelVersion
from training.services import serving

pytestmark = pytest.mark.django_db

SECRET = "Traceback: /srv/internal/app.py, password=hunter2"


class _ModelServer(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible server as the tests need one: `/ok` answers, `/forbidden` answers 403 with text of
    its own, `/midway` breaks off its stream after one word, `/moved` redirects to `redirect_to`."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.paths.append(self.path)
        self.server.hosts.append(self.headers["Host"])
        if self.path.startswith("/moved/"):
            self.send_response(307)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/forbidden/"):
            return self._send(403, SECRET.encode(), "text/plain")
        if not body.get("stream"):
            return self._send(200, json.dumps({"choices": [{"index": 0, "message": {
                "role": "assistant", "content": "Four."}}]}).encode(), "application/json")
        events = [{"choices": [{"index": 0, "delta": {"content": word}}]} for word in ("It", " is", " four.")]
        if self.path.startswith("/midway/"):
            events = [events[0], {"error": {"message": SECRET}}]
        self._send(200, b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n",
                   "text/event-stream")

    def _send(self, status, body: bytes, content_type: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def start_server():
    servers = []

    def start():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModelServer)
        server.paths, server.hosts, server.redirect_to = [], [], ""
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def admin(make_user, project):
    """A project admin who is not staff: the installation's settings decide which servers they may use."""
    user = make_user("projectadmin")
    accounts.membership_set(project=project, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def version(project):
    return ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, folder="served-elsewhere")


@pytest.fixture(autouse=True)
def fresh_throttles():
    caches["throttles"].clear()


def deploy(client, project, version, url):
    return client.post(f"/api/projects/{project.id}/deployments/create/", {
        "model_version_id": version.id, "backend": "openai", "url": url, "served_model": "tiny", "replace": True,
    }, format="json")


def serve_from(url):
    """Make the deployment at `url` the one that answers chats."""
    Deployment.objects.update(is_active=False)
    Deployment.objects.filter(url=url).update(is_active=True)


def chat(client, project):
    return client.post(f"/api/projects/{project.id}/chat/reply/",
                       {"turns": [{"role": "user", "content": "What is 2 plus 2?"}]}, format="json")


def events_of(response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent event stream."""
    found = []
    for block in b"".join(response.streaming_content).decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        found.append((lines.get("event", "message"), json.loads(lines["data"])))
    return found


def test_a_project_admin_may_deploy_only_servers_the_installation_allows(admin, owner, project, version, api_as,
                                                                          settings, start_server):
    server, base = start_server()
    client = api_as(admin)
    settings.OPENAI_BACKEND_URLS = []
    refused = deploy(client, project, version, f"{base}/ok")
    assert refused.status_code == 400 and "OPENAI_BACKEND_URLS is empty" in refused.json()["url"][0]

    settings.OPENAI_BACKEND_URLS = ["*"]
    for url, why in [(f"{base}/ok", "127.0.0.1 is a loopback address"),
                     (f"http://localhost:{server.server_address[1]}/ok", "localhost resolves to 127.0.0.1, a loopback address"),
                     ("http://[::1]:8000", "::1 is a loopback address"),
                     ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
                     ("http://10.1.2.3:8000/v1", "10.1.2.3 is a private address"),
                     ("http://0.0.0.0:5432", "0.0.0.0 is an unspecified address"),
                     ("http://100.64.0.1", "100.64.0.1 is not a public address"),
                     ("http://models.invalid/v1", "does not resolve"),
                     ("http://user:secret@models.example.org/v1", "user name or password")]:
        refused = deploy(client, project, version, url)
        assert refused.status_code == 400, url
        assert why in refused.json()["url"][0], (url, refused.json())

    settings.OPENAI_BACKEND_URLS = [f"{base}/ok"]
    assert "not among the servers" in deploy(client, project, version, f"{base}/okay").json()["url"][0]
    assert not Deployment.objects.exists() and server.paths == []  # nothing was ever called
    assert deploy(client, project, version, f"{base}/ok/v1").status_code == 201
    # Staff run the installation: any server.
    settings.OPENAI_BACKEND_URLS = []
    other = ModelVersion.objects.create(project=project, kind=ModelKind.SFT, version=1, folder="elsewhere")
    assert deploy(api_as(owner), project, other, f"{base}/forbidden").status_code == 201


def test_a_chat_streams_as_events_and_a_failure_is_a_clean_answer(admin, member, project, version, api_as, settings,
                                                                 start_server):
    _, base = start_server()
    settings.OPENAI_BACKEND_URLS = [base]
    for path in ("midway", "forbidden", "ok"):
        assert deploy(api_as(admin), project, version, f"{base}/{path}").status_code == 201
    answered = chat(api_as(member), project)
    assert answered.status_code == 200 and answered["Content-Type"].startswith("text/event-stream")
    events = events_of(answered)
    assert events[:3] == [("message", {"text": "It"}), ("message", {"text": " is"}), ("message", {"text": " four."})]
    # done names the version, with the reply's signature (saving the chat as a prompt sends it back)
    assert events[3][0] == "done" and events[3][1]["model_version"] == "policy-v1" and events[3][1]["signature"]

    serve_from(f"{base}/forbidden")
    admin_reads = f"{base}/forbidden/v1/chat/completions answered 403 Forbidden"
    for user, said in [(member, "could not answer just now"), (admin, admin_reads)]:
        failed = chat(api_as(user), project)
        assert failed.status_code == 502 and failed["Content-Type"] == "application/json"
        assert said in failed.json()["detail"] and SECRET not in failed.content.decode()

    serve_from(f"{base}/midway")
    events = events_of(chat(api_as(admin), project))
    assert events[0] == ("message", {"text": "It"})
    assert events[1][0] == "error" and "failed while streaming" in events[1][1]["detail"]
    assert SECRET not in json.dumps(events)


def test_every_request_is_fenced_again_redirects_and_names_that_resolve_elsewhere_now(
        admin, project, version, api_as, settings, start_server, monkeypatch):
    allowed, allowed_base = start_server()
    internal, internal_base = start_server()
    allowed.redirect_to = f"{internal_base}/ok/v1/chat/completions"
    settings.OPENAI_BACKEND_URLS = [allowed_base]
    assert deploy(api_as(admin), project, version, f"{allowed_base}/moved").status_code == 201
    tree.message_create(project=project, parent=None, role="user", text="What is 2 plus 2?", source="import")
    job = GenerationJob.objects.create(project=project, max_prompts=1, requested_by=admin)
    assert serving.generation_execute(job_id=job.id) == "failed"
    job.refresh_from_db()
    assert "refused" in job.error and "not among the servers" in job.error
    assert allowed.paths and internal.paths == []  # the redirect was never followed
    assert not Message.objects.filter(role="assistant").exists()

    # A name that resolved to a public address when deployed and to loopback when used.
    real = socket.getaddrinfo
    answer = {"address": "93.184.215.14"}

    def resolve(host, port, *args, **kwargs):
        if host == "models.example.org":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer["address"], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    settings.OPENAI_BACKEND_URLS = ["*"]
    Deployment.objects.update(is_active=False)
    port = internal.server_address[1]
    assert deploy(api_as(admin), project, version, f"http://models.example.org:{port}/ok").status_code == 201
    answer["address"] = "127.0.0.1"
    failed = chat(api_as(admin), project)
    assert failed.status_code == 502 and "models.example.org resolves to 127.0.0.1" in failed.json()["detail"]
    assert internal.paths == []


def test_chat_and_generation_are_rate_limited_per_user_in_the_database(owner, member, reviewer, project, version,
                                                                      api_as, settings, start_server):
    _, base = start_server()
    serving.deployment_create(project=project, model_version=version, by=owner, backend="openai", url=f"{base}/ok",
                              served_model="tiny")
    settings.CHAT_THROTTLE_RATE = "2/minute"
    assert [chat(api_as(member), project).status_code for _ in range(3)] == [200, 200, 429]
    limited = chat(api_as(member), project)
    assert limited.status_code == 429 and 0 < int(limited["Retry-After"]) <= 60
    assert chat(api_as(reviewer), project).status_code == 200  # each user has a count of their own
    # Counted in the database cache's table, which every web process reads (the default cache is per process).
    assert caches["throttles"].get(f"throttle_chat_{member.pk}") is not None
    assert caches["default"].get(f"throttle_chat_{member.pk}") is None

    settings.GENERATION_THROTTLE_RATE = "1/hour"
    url = f"/api/projects/{project.id}/generation/create/"
    assert api_as(owner).post(url, {"max_prompts": 5}, format="json").status_code == 202
    again = api_as(owner).post(url, {"max_prompts": 5}, format="json")
    assert again.status_code == 429 and int(again["Retry-After"]) > 60
    assert GenerationJob.objects.count() == 1


def test_a_server_checked_by_its_address_is_connected_to_at_that_address(start_server):
    """What keeps a `*` server's name from resolving to a public address for the check and to an internal one
    for the connection: the request goes to the address the fence returned, under the server's own name."""
    from training.generation import SamplingSettings, ServerFence, backend_for

    class CheckedAddress(ServerFence):
        def connect_address(self, url):
            return "127.0.0.1"  # what the check resolved; the name itself resolves nowhere

    server, _ = start_server()
    url = f"http://models.invalid:{server.server_address[1]}/ok"
    backend = backend_for(kind="openai", url=url, model="tiny", fence=CheckedAddress([]))
    assert backend.generate([[{"role": "user", "content": "Hi"}]], n=1, settings=SamplingSettings()) == [["Four."]]
    assert server.paths == ["/ok/v1/chat/completions"] and server.hosts == [f"models.invalid:{server.server_address[1]}"]
