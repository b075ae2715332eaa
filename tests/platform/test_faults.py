"""Faults the platform must outlive: its database restarting under annotation load, and a worker killed.

`manage.py serve` runs against a PostgreSQL server of the test's own (tests/platform/faults.py), which the test
stops and starts while three annotators submit rankings as fast as the server answers.
"""

import http.client
import json
import signal
import subprocess
import sys
import threading
import time

import psutil
import psycopg
import pytest

from tests.helpers import REPO_ROOT
from tests.platform.faults import PrivatePostgres, free_port, manage, platform_env, wait_for

pytestmark = pytest.mark.slow

SEED = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from annotate.models import Role
from annotate.services import accounts
from tests.annotate.factories import ranking_items

User = get_user_model()
owner = User.objects.create_user("owner", is_staff=True)
project = accounts.project_create(name="faults", created_by=owner)
mix = {kind: 0 for kind in ("prompt", "demonstration", "compare", "label", "review")}
accounts.project_settings_update(project=project, overlap=1, task_mix={**mix, "ranking": 1})
ranking_items(project, 400)
tokens = []
for i in range(3):
    user = User.objects.create_user(f"annotator{i}")
    accounts.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    tokens.append(Token.objects.create(user=user).key)
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
session = SessionStore()
session.update({SESSION_KEY: str(owner.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: owner.get_session_auth_hash()})
session.create()
print(json.dumps({"project": project.id, "owner": Token.objects.create(user=owner).key, "tokens": tokens,
                  "session": session.session_key}))
"""


def request(port, method, path, token=None, body=None, timeout=30, session=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Token {token}"} if token else {})}
    if session:
        headers["Cookie"] = f"sessionid={session}"
    try:
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def answer_while_down(port, path, token=None, session=None):
    """The first answer to GET `path` (a request that was already inside a query when the database stopped may
    wait for its connection to fail: one more try)."""
    for attempt in range(3):
        try:
            return request(port, "GET", path, token, timeout=10, session=session)
        except TimeoutError:
            print(f"GET {path} timed out while the database was away (attempt {attempt + 1})")
    raise AssertionError(f"GET {path} never answered while the database was away")


def health(port):
    try:
        status, _, body = request(port, "GET", "/health/", timeout=5)
    except OSError:
        return None
    return status, json.loads(body)


class Annotator(threading.Thread):
    """Rank as fast as the server answers; remember every submit the server acknowledged (200)."""

    def __init__(self, port, project, token):
        super().__init__(daemon=True)
        self.port, self.project, self.token = port, project, token
        self.acknowledged, self.refused, self.stop = [], [], threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            try:
                status, _, body = request(self.port, "POST", f"/api/projects/{self.project}/tasks/next/", self.token, {})
                if status != 200:
                    self.refused.append(status)
                    time.sleep(0.2)
                    continue
                task = json.loads(body)["task"]
                if task is None:
                    return
                n += 1
                tiers = [[c["id"]] for c in task["candidates"]]
                status, _, body = request(self.port, "POST", f"/api/tasks/{task['id']}/submit/", self.token,
                                          {"submit_key": f"{self.token[:8]}-{n}", "tiers": tiers})
                if status == 200:
                    self.acknowledged.append(task["id"])
                else:
                    self.refused.append(status)
                    time.sleep(0.2)
            except OSError:
                self.refused.append("connection")
                time.sleep(0.2)


def workers_of(serve):
    """The pids and command lines of serve's job workers that are alive (a killed one is a zombie until reaped)."""
    found = {}
    for child in psutil.Process(serve.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "worker" in child.cmdline():
                found[child.pid] = " ".join(child.cmdline())
        except psutil.Error:
            continue  # it ended while we looked
    return found


def test_serve_rides_out_a_database_restart_and_starts_a_killed_worker_again(tmp_path):
    postgres = PrivatePostgres()
    try:
        env = platform_env(postgres.url("faults"), tmp_path / "data", WORKER_LOST_AFTER_SECONDS=10)
        manage(env, "migrate", "--verbosity", "0")
        seeded = json.loads(manage(env, "shell", "--no-imports", "-c", SEED).strip().splitlines()[-1])
        port = free_port()
        # Its output goes to a file: a pipe nobody reads fills with the errors logged while the database is away,
        # and then every process writing to it blocks.
        log = tmp_path / "serve.log"
        serve = subprocess.Popen([sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                                 cwd=REPO_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: (h := health(port)) and h[0] == 200 and h[1]["workers"]["alive"] == 2, seconds=120,
                     what="serve answering /health/ with both workers alive")
            workers_before = workers_of(serve)
            assert len(workers_before) == 2, workers_before

            annotators = [Annotator(port, seeded["project"], token) for token in seeded["tokens"]]
            for annotator in annotators:
                annotator.start()
            wait_for(lambda: sum(len(a.acknowledged) for a in annotators) >= 30, seconds=60, what="30 rankings")

            postgres.stop()
            down_at = time.monotonic()
            # While the database is away: a JSON 503 that says so, never Django's HTML 500 page.
            status, headers, body = answer_while_down(port, f"/api/projects/{seeded['project']}/settings/", seeded["owner"])
            assert status == 503 and "database" in json.loads(body)["detail"] and headers["Retry-After"] == "5"
            status, _, body = request(port, "GET", "/health/")
            assert status == 503 and json.loads(body)["status"] == "down"
            status, headers, body = answer_while_down(port, f"/projects/{seeded['project']}/", session=seeded["session"])
            assert status == 503 and b"database" in body and headers["Retry-After"] == "5"
            time.sleep(max(0.0, 3 - (time.monotonic() - down_at)))
            postgres.start()
            acknowledged_at_restart = sum(len(a.acknowledged) for a in annotators)
            wait_for(lambda: sum(len(a.acknowledged) for a in annotators) >= acknowledged_at_restart + 30, seconds=60,
                     what="30 more rankings after the restart")
            for annotator in annotators:
                annotator.stop.set()
            for annotator in annotators:
                annotator.join(timeout=60)

            # Nothing acknowledged is lost, and nothing is stored twice.
            acknowledged = [task for a in annotators for task in a.acknowledged]
            with psycopg.connect(postgres.url("faults")) as connection:
                stored = dict(connection.execute(
                    "SELECT task_id, count(*) FROM annotate_ranking WHERE task_id = ANY(%s) GROUP BY task_id",
                    [acknowledged]).fetchall())
            assert len(acknowledged) == len(set(acknowledged)) and set(stored) == set(acknowledged)
            assert set(stored.values()) == {1}
            print(f"\n{len(acknowledged)} acknowledged submits, {len(stored)} stored once each; refused while the "
                  f"database was away: {sum(len(a.refused) for a in annotators)}")

            # The workers rode it out: the same processes, heartbeating again, and a job asked for now runs.
            wait_for(lambda: (h := health(port)) and h[0] == 200 and h[1]["workers"]["alive"] == 2, seconds=60,
                     what="both workers alive again after the restart")
            assert workers_of(serve) == workers_before
            status, _, body = request(port, "POST", f"/api/projects/{seeded['project']}/snapshots/export/",
                                      seeded["owner"], {"kind": "preference", "parquet": False})
            assert status == 202, body
            job = json.loads(body)["id"]

            def export_done():
                _, _, answer = request(port, "GET", f"/api/projects/{seeded['project']}/exports/{job}/", seeded["owner"])
                answer = json.loads(answer)
                return answer if answer["status"] in ("succeeded", "failed") else None

            finished = wait_for(export_done, seconds=90, what="the export asked for after the restart")
            assert finished["status"] == "succeeded" and finished["snapshot"], finished

            # A worker killed outright is started again, and /health/ is right, within 10 s.
            killed = next(pid for pid, command in workers_before.items() if "exports" in command)
            psutil.Process(killed).send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: len(workers_of(serve)) == 2 and killed not in workers_of(serve), seconds=10,
                     what="a new worker in place of the killed one")
            wait_for(lambda: (h := health(port)) and h[0] == 200 and h[1]["status"] == "ok",
                     seconds=max(0.5, 10 - (time.monotonic() - killed_at)), what="/health/ ok after the kill")
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
            output = log.read_text(errors="replace")
            print(output[-4000:])  # shown when the test fails (pytest keeps a passing test's output to itself)
        assert serve.returncode == 0, output[-3000:]
    finally:
        postgres.close()


ROUND = """
import json
from django.contrib.auth import get_user_model
from annotate.services import accounts
from training.services import runs
from tests.training.factories import arithmetic_project

User = get_user_model()
owner = User.objects.create_user("owner", is_staff=True)
member = User.objects.create_user("member")
project = accounts.project_create(name="faults", created_by=owner)
arithmetic_project(project, member, prompts=40)
run = runs.run_create(project=project, by=owner, preset="tiny", seed=1,
                      config={"base": {"max_steps": 4}, "sft": {"max_steps": 150}, "reward": {"max_steps": 4},
                              "ppo": {"total_episodes": 64}})
print(json.dumps({"run": run.id}))
"""


@pytest.mark.training
def test_a_training_round_rides_out_a_database_restart_mid_stage(tmp_path):
    postgres = PrivatePostgres()
    try:
        url = postgres.url("faults")
        env = platform_env(url, tmp_path / "data", WORKER_LOST_AFTER_SECONDS=30)
        manage(env, "migrate", "--verbosity", "0")
        run = json.loads(manage(env, "shell", "--no-imports", "-c", ROUND).strip().splitlines()[-1])["run"]
        log = tmp_path / "worker.log"
        worker = subprocess.Popen([sys.executable, "manage.py", "worker", "--queues", "training"], cwd=REPO_ROOT,
                                  env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)

        def sft_step():
            try:
                with psycopg.connect(url) as connection:
                    row = connection.execute("SELECT step FROM training_runstage WHERE run_id = %s AND name = 'sft' "
                                             "AND status = 'running'", [run]).fetchone()
                return row and row[0] >= 2 and row[0]
            except psycopg.OperationalError:
                return None

        try:
            stopped_at = wait_for(sft_step, seconds=240, every=0.2, what="the round's SFT stage to train")
            postgres.stop()
            time.sleep(3)
            postgres.start()

            def finished():
                with psycopg.connect(url) as connection:
                    return connection.execute("SELECT status, error FROM training_trainingrun WHERE id = %s AND "
                                              "status NOT IN ('queued', 'running')", [run]).fetchone()

            status, error = wait_for(finished, seconds=300, what="the round to end")
            assert status == "succeeded", error
            with psycopg.connect(url) as connection:
                steps = [step for (step,) in connection.execute(
                    "SELECT p.step FROM training_metricpoint p JOIN training_runstage s ON s.id = p.stage_id "
                    "WHERE s.run_id = %s AND s.name = 'sft' ORDER BY p.step", [run])]
                versions = connection.execute("SELECT kind FROM training_modelversion ORDER BY id").fetchall()
            # The steps it made while the database was away were written once it answered: the curve has them all.
            assert steps == list(range(1, 151)) and stopped_at < 150, (stopped_at, steps)
            assert [kind for (kind,) in versions] == ["base", "sft", "reward", "policy"]
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
            # What the worker said, without the pool's retries while the database was away.
            said = [line for line in log.read_text(errors="replace").splitlines()
                    if "psycopg.pool" not in line and "Is the server running" not in line]
            print("\n".join(said)[-6000:])
    finally:
        postgres.close()
