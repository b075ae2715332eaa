"""The content screen on model output: generated candidates (a blocked reply is not written, and its finding is
kept) and chat replies (screened sentence by sentence; a stopped reply is replaced by a notice, the original kept
for admins; personal data shown as placeholders). The model is an OpenAI-compatible server on loopback with a
script of replies, driven through the real openai backend."""

import http.server
import json
import threading

import pytest
from django.core.cache import caches

from annotate.models import CandidateSet, CandidateSetKind, Message, ScreenAction, ScreenFinding, WorkItem
from annotate.services import screening, tree
from training.models import ModelKind, ModelVersion
from training.services import serving

pytestmark = pytest.mark.django_db

LEAK = "Write to leak.me@example.com for the answer."
HELD = "Oh darn, I forgot it."
CHAT_CLEAN = "It is four. Two and two make four.\nAsk me more."


class _ScriptedModel(http.server.BaseHTTPRequestHandler):
    """Answers a prompt containing "leaky" asked for 4 replies with a script (a clean one, one with an email, one
    with a listed word, a clean one), anything else with clean replies; streams the server's `chat` text a few
    characters at a time."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        asked = body["messages"][-1]["content"]
        if body.get("stream"):
            text = self.server.chat
            pieces = [text[i:i + 5] for i in range(0, len(text), 5)]
            events = [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in pieces]
            payload = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
            return self._send(payload, "text/event-stream")
        n = body.get("n", 1)
        # Written last to first (the job pops its replies): the held one first, then the blocked one.
        script = ["Four, I think.", LEAK, HELD, "It is four."] if "leaky" in asked and n == 4 else []
        texts = script or [f"Reply {i} to {asked}" for i in range(n)]
        choices = [{"index": i, "message": {"role": "assistant", "content": text}} for i, text in enumerate(texts)]
        self._send(json.dumps({"choices": choices}).encode(), "application/json")

    def _send(self, body: bytes, content_type: str):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def fresh_throttles():
    caches["throttles"].clear()


@pytest.fixture
def model_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedModel)
    server.chat = CHAT_CLEAN
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def deployed(project, owner, model_server):
    version = ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, folder="served-elsewhere")
    serving.deployment_create(project=project, model_version=version, by=owner, backend="openai",
                              url=f"http://127.0.0.1:{model_server.server_address[1]}", served_model="tiny")
    return version


def screen_on(project, **changes):
    screening.screen_configure(project=project, enabled=True, **changes)


def generate(project, owner):
    job = serving.generation_enqueue(project=project, by=owner, max_prompts=10)
    assert serving.generation_execute(job_id=job.id) == "succeeded"
    job.refresh_from_db()
    return job


def test_a_blocked_generated_reply_is_not_written_but_recorded_and_the_next_job_fills_its_slot(project, owner, deployed):
    project.settings.replies_per_ranking = 4
    project.settings.save()
    screen_on(project, words=["darn"], actions={"model": {"word": ScreenAction.HOLD}})
    leaky = tree.message_create(project=project, parent=None, role="user", text="A leaky question?", source="import")
    clean = tree.message_create(project=project, parent=None, role="user", text="A plain question?", source="import")

    first = generate(project, owner)
    assert (first.replies_written, first.replies_screened) == (7, 1)
    assert not Message.objects.filter(text__contains="leak.me").exists()
    finding = ScreenFinding.objects.get(where="generation", message__isnull=True)
    assert finding.message_id is None and finding.text == LEAK and finding.model_version_id == deployed.id
    assert (finding.kind, finding.action, LEAK[finding.start:finding.end]) == ("email", "block", "leak.me@example.com")
    held = Message.objects.get(text=HELD)
    assert held.excluded and held.excluded_reason.startswith("held by the screen: word")
    assert not WorkItem.objects.filter(message=held, open_slots__gt=0).exists()  # nobody is asked about it
    assert CandidateSet.objects.filter(parent=clean, kind=CandidateSetKind.RANKING).count() == 1
    assert not CandidateSet.objects.filter(parent=leaky).exists()  # 2 usable replies of 4: nothing to rank yet

    # The prompt still needs its replies: the next job asks for the two missing and the ranking forms.
    second = generate(project, owner)
    assert (second.replies_written, second.replies_screened) == (2, 0)
    ranking = CandidateSet.objects.get(parent=leaky, kind=CandidateSetKind.RANKING)
    assert held.id not in ranking.message_ids and len(ranking.message_ids) == 4


def chat(api_as, user, project):
    response = api_as(user).post(f"/api/projects/{project.id}/chat/reply/",
                                 {"turns": [{"role": "user", "content": "What is 2 plus 2?"}]}, format="json")
    assert response.status_code == 200, response.content
    found = []
    for block in b"".join(response.streaming_content).decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        found.append((lines.get("event", "message"), json.loads(lines["data"])))
    return found


def test_a_chat_reply_with_a_blocked_item_stops_with_the_notice_and_the_finding_keeps_the_original(
        project, member, deployed, model_server, api_as):
    screen_on(project)
    model_server.chat = "Sure. My card is 4111 1111 1111 1111, keep it. And more text that is never generated."
    events = chat(api_as, member, project)
    assert events[0] == ("message", {"text": "Sure."})  # the clean first sentence was released
    assert events[-1] == ("withheld", {"model_version": "policy-v1", "notice": serving.CHAT_WITHHELD_NOTICE})
    assert "4111" not in json.dumps(events) and not any(kind == "done" for kind, _ in events)  # and no signature
    finding = ScreenFinding.objects.get(where="chat")
    assert (finding.kind, finding.action, finding.user, finding.model_version_id) == ("card", "block", member, deployed.id)
    assert finding.text.startswith("Sure. My card is 4111 1111 1111 1111, keep it.")
    assert finding.text[finding.start:finding.end] == "4111 1111 1111 1111"


def test_a_chat_shows_personal_data_as_placeholders_when_its_kind_is_redacted(project, member, deployed, model_server,
                                                                              api_as):
    screen_on(project, actions={"model": {"email": ScreenAction.REDACT}})
    model_server.chat = "Mail ann@example.com. Or bob@example.org! Or ann@example.com again."
    events = chat(api_as, member, project)
    assert events[-1][0] == "done" and events[-1][1]["signature"]
    shown = "".join(data["text"] for kind, data in events if kind == "message")
    assert shown == "Mail {{EMAIL_1}}. Or {{EMAIL_2}}! Or {{EMAIL_1}} again."
    assert [data["text"] for kind, data in events if kind == "message"][0] == "Mail {{EMAIL_1}}."  # by sentence
    assert ScreenFinding.objects.filter(where="chat", action="redact").count() == 3


@pytest.mark.parametrize("on", [False, True])
def test_a_clean_chat_streams_as_before_screen_on_or_off(project, member, deployed, api_as, on):
    if on:
        screen_on(project)
    events = chat(api_as, member, project)
    pieces = [data["text"] for kind, data in events if kind == "message"]
    assert "".join(pieces) == CHAT_CLEAN and events[-1][0] == "done" and events[-1][1]["signature"]
    # Off: the server's pieces as they came; on: whole sentences.
    expected = [CHAT_CLEAN[i:i + 5] for i in range(0, len(CHAT_CLEAN), 5)] if not on else \
        ["It is four.", " Two and two make four.", "\nAsk me more."]
    assert pieces == expected
    assert not ScreenFinding.objects.exists()
