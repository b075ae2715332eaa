"""Scripted annotators for the demo: separate users who work through the real HTTP API like people.

Each logs in for a token (POST /api/auth/token/), asks for the next task of a kind
(POST /api/projects/{id}/tasks/next/) and submits it (POST /api/tasks/{id}/submit/). They know
the hidden check of `training.demo.data` and act on it with their own noise:

- demonstrations: the right number in the form the prompt asks for, with personal rates of wrong
  numbers, of sloppy wording and of following the asked form (else the guidelines' form, out of
  habit: writing to an instruction is harder than seeing whether a reply follows it);
- rankings: by the hidden grade plus personal Gaussian noise drawn per distinct text, rounded
  into tiers (equal grades tie, the same text always ties), so two annotators of one set
  sometimes disagree; a set whose replies all say the same is skipped, as a person would;
- reviews (the reviewer): accept a demonstration with the right number, whatever its wording,
  with a little noise;
- prompts: new problems of the family from a list they are given.

They take turns one task at a time in a fixed order with seeded noise, so a run is repeatable.
No Django import at module level: this is a client of the API.
"""

import random
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import requests

from training.demo import data as demo_data

SITTING = 10


@dataclass(frozen=True)
class Profile:
    username: str
    error_rate: float = 0.1  # demonstrations with a wrong number
    sloppy_rate: float = 0.1  # demonstrations in other words than any reply form
    follow_rate: float = 0.5  # demonstrations in the form the prompt asks for (else `The answer is N.`)
    rank_noise: float = 0.4  # sd of the noise added to the hidden grade when ranking
    review_noise: float = 0.05  # chance a review goes the wrong way
    kinds: tuple = ("ranking", "demonstration")


ANNOTATORS = (
    Profile("alice", error_rate=0.05, sloppy_rate=0.05, follow_rate=0.7, rank_noise=0.2),
    Profile("bob", error_rate=0.15, sloppy_rate=0.10, follow_rate=0.5, rank_noise=0.35),
    Profile("carol", error_rate=0.20, sloppy_rate=0.15, follow_rate=0.4, rank_noise=0.3),
    Profile("dave", error_rate=0.30, sloppy_rate=0.20, follow_rate=0.3, rank_noise=0.45),
    Profile("erin", error_rate=0.10, sloppy_rate=0.25, follow_rate=0.6, rank_noise=0.25),
    Profile("frank", error_rate=0.25, sloppy_rate=0.10, follow_rate=0.45, rank_noise=0.4),
)
REVIEWER = Profile("reviewer", kinds=("review",), review_noise=0.03)


@dataclass
class Annotator:
    profile: Profile
    base_url: str
    project_id: int
    rng: random.Random
    session: requests.Session = field(default_factory=requests.Session)
    done: dict = field(default_factory=dict)

    def login(self, password: str) -> None:
        answer = self.session.post(f"{self.base_url}/api/auth/token/",
                                   data={"username": self.profile.username, "password": password}, timeout=60)
        answer.raise_for_status()
        self.session.headers["Authorization"] = f"Token {answer.json()['token']}"

    def next_task(self, kind: str) -> dict | None:
        answer = self.session.post(f"{self.base_url}/api/projects/{self.project_id}/tasks/next/", json={"kind": kind},
                                   timeout=60)
        answer.raise_for_status()
        return answer.json()["task"]

    def submit(self, task: dict, payload: dict) -> None:
        body = {"submit_key": f"{self.profile.username}-{task['id']}", "time_spent_ms": self.rng.randint(3000, 40000),
                **payload}
        self._task_post(task, "submit", body)
        self.done[task["kind"]] = self.done.get(task["kind"], 0) + 1

    def skip(self, task: dict) -> None:
        self._task_post(task, "skip", {})
        self.done["skipped"] = self.done.get("skipped", 0) + 1

    def _task_post(self, task: dict, action: str, body: dict) -> None:
        answer = self.session.post(f"{self.base_url}/api/tasks/{task['id']}/{action}/", json=body, timeout=60)
        if answer.status_code >= 400:
            raise RuntimeError(f"{self.profile.username}: {action} of task {task['id']} ({task['kind']}) refused: "
                               f"{answer.status_code} {answer.text[:300]}")

    def act(self, task: dict) -> None:
        prompt = task["conversation"][-1]["text"] if task["kind"] != "review" else task["conversation"][-2]["text"]
        p = self.profile
        if task["kind"] == "demonstration":
            self.submit(task, {"text": demo_data.reply_write(prompt, self.rng, error_rate=p.error_rate,
                                                             sloppy_rate=p.sloppy_rate, follow_rate=p.follow_rate)})
        elif task["kind"] == "ranking":
            tiers = self.rank(prompt, task["candidates"])
            if tiers is None:
                self.skip(task)
            else:
                self.submit(task, {"tiers": tiers})
        elif task["kind"] == "review":
            # The reviewer checks the number and lets other wordings of the right one pass: which
            # wording is wanted is for the rankings to say.
            reply = task["conversation"][-1]["text"]
            accepted = demo_data.reply_grade(prompt, reply) >= 2
            if self.rng.random() < p.review_noise:
                accepted = not accepted
            self.submit(task, {"accepted": True} if accepted else {"accepted": False, "comment": "the number is wrong"})
        else:
            raise ValueError(f"{p.username} does not do {task['kind']} tasks")

    def rank(self, prompt: str, candidates: list[dict]) -> list[list[int]] | None:
        """Tiers by the hidden grade plus this annotator's noise; None (skip) when every reply says the same.

        The noise is drawn per distinct text, as a person sees it: the same text twice is one
        judgement, so identical replies always share a tier.
        """
        texts = {c["text"].strip() for c in candidates}
        if len(texts) == 1:
            return None
        noise = {text: self.rng.gauss(0, self.profile.rank_noise) for text in sorted(texts)}
        noisy = {c["id"]: demo_data.reply_grade(prompt, c["text"]) + noise[c["text"].strip()] for c in candidates}
        # Tiers of the rounded scores; if that ties everything (the API refuses it), the texts ordered by the noise alone.
        tier_of = round if len({round(score) for score in noisy.values()}) > 1 else float
        scored = {}
        for candidate_id, score in noisy.items():
            scored.setdefault(tier_of(score), []).append(candidate_id)
        return [scored[score] for score in sorted(scored, reverse=True)]

    def write_prompt(self, text: str) -> bool:
        task = self.next_task("prompt")
        if task is None:
            return False
        self.submit(task, {"text": text})
        return True


def team(base_url: str, project_id: int, *, password: str, seed: int = 0,
         profiles=ANNOTATORS + (REVIEWER,)) -> list[Annotator]:
    members = []
    for profile in profiles:
        member = Annotator(profile, base_url.rstrip("/"), project_id, random.Random(f"{seed}-{profile.username}"))
        member.login(password)
        members.append(member)
    return members


def work_through(members: list[Annotator], *, prompts: list[str] = (), max_tasks: int = 100_000) -> dict:
    """Write `prompts` (in turns), then take tasks in turns until nobody gets one; return counts per person."""
    writers = [m for m in members if "demonstration" in m.profile.kinds]
    for index, text in enumerate(prompts):
        writers[index % len(writers)].write_prompt(text)
    taken = 0
    while taken < max_tasks:
        progressed = False
        for member in members:
            # A sitting: up to SITTING tasks of one kind in a row, as a person works, before the next one's turn.
            for kind in member.profile.kinds:
                sitting = 0
                while sitting < SITTING and taken < max_tasks:
                    task = member.next_task(kind)
                    if task is None:
                        break
                    member.act(task)
                    sitting += 1
                    taken += 1
                if sitting:
                    progressed = True
                    break
        if not progressed:
            break
    return {m.profile.username: dict(m.done) for m in members}


@contextmanager
def local_server():
    """Serve this process's Django app over HTTP on a free loopback port (for a command run without
    a web server): the annotators still go through URLs, auth, serializers and the queue."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.servers.basehttp import ThreadedWSGIServer
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    # Django's threaded server closes each request thread's database connections as it ends;
    # without that, persistent connections (CONN_MAX_AGE) pile up to the database's limit.
    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=ThreadedWSGIServer,
                         handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="demo-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
