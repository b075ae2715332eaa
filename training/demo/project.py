"""The demo project: its accounts, guidelines, settings, seed prompts and pretraining corpus."""

import io
import random
from pathlib import PurePath

from django.contrib.auth import get_user_model
from django.db import transaction

from annotate.importers import import_run
from annotate.models import Message, MessageRole, MessageSource, Project, Role
from annotate.services import accounts as account_services
from annotate.services import tree
from training.demo import annotators
from training.demo import data as demo_data

DEMO_PASSWORD = "demo-pass-2026"
# alice and bob are for people; the scripted annotators (manage.py demo_annotate) log in as carol..frank
# too: two annotators write the demonstrations of a seed prompt and may not rank its set, so two others must.
DEMO_PEOPLE = [
    ("admin", Role.ADMIN), ("reviewer", Role.REVIEWER), ("alice", Role.ANNOTATOR), ("bob", Role.ANNOTATOR),
    ("carol", Role.ANNOTATOR), ("dave", Role.ANNOTATOR), ("erin", Role.ANNOTATOR), ("frank", Role.ANNOTATOR),
]
DEMO_PROJECT = "Demo: arithmetic assistant"
DEMO_GUIDELINES = """Write short arithmetic questions (sums and differences of small numbers, plain or as little stories),
and say, if you like, how the reply should look: "Answer briefly." (then `It is N.`), "End your answer with
an exclamation mark." or "Begin your answer with Sure."
Reply with the right number in the form the question asks for; if it asks for none, `The answer is N.`
When ranking, put right answers in the asked form first, then right ones in `The answer is N.`, then
the right number in other words, then a wrong number in one of these forms, then anything else."""
# Seed prompts: each comes with two replies of an earlier assistant (imported) and gets two
# demonstrations from different annotators; the rankings of these four are the first round's
# comparisons (no model of the project exists yet to write candidates).
DEMO_SEED_PROMPTS = 300
SEED_REPLIES = 2
DEMO_SETTINGS = {
    "replies_per_ranking": 4, "overlap": 2, "max_depth": 1, "demonstrations_per_prompt": 2,
    "task_mix": {"label": 0, "compare": 0},
}


def demo_project_name(base: str = "") -> str:
    """The demo project's name: one project for the model built from scratch, and one per adopted base (`--base`
    names a registered base model or a directory), so that each track's rounds and figures stay apart."""
    return f"{DEMO_PROJECT}, from {PurePath(base).name or base}" if base else DEMO_PROJECT


@transaction.atomic
def demo_project_create(*, seed_prompts: int = DEMO_SEED_PROMPTS, corpus_documents: int = 16000,
                        base: str = "") -> Project:
    """Create the demo accounts and project, or return them as they are if they exist.

    With `base` (the round adopts that model), the project of that base: the same guidelines, settings and seed
    prompts, and no pretraining corpus, since no base model is built from scratch in it.
    """
    User = get_user_model()
    users = {}
    for username, role in DEMO_PEOPLE:
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.is_staff = user.is_superuser = role == Role.ADMIN
            user.save()
        users[username] = (user, role)
    name = demo_project_name(base)
    project = Project.objects.filter(name=name).first()
    if project is None:
        project = account_services.project_create(
            name=name,
            description="Teach a small model to answer arithmetic questions, from human feedback.",
            guidelines=DEMO_GUIDELINES,
            created_by=users["admin"][0],
        )
    for user, role in users.values():
        account_services.membership_set(project=project, user=user, role=role)
    if not Message.objects.filter(project=project).exists():
        account_services.project_settings_update(project=project, **DEMO_SETTINGS)
        rng = random.Random("earlier-assistant")
        for problem in demo_data.prompt_pool(seed_prompts):
            prompt = tree.message_create(
                project=project, parent=None, role=MessageRole.USER, text=problem.prompt, source=MessageSource.IMPORT,
                origin={"source": "demo"},
            )
            for _ in range(SEED_REPLIES):
                tree.message_create(
                    project=project, parent=prompt, role=MessageRole.ASSISTANT, source=MessageSource.IMPORT,
                    text=demo_data.earlier_reply(problem.prompt, rng), origin={"source": "demo", "model": "earlier assistant"},
                )
        if not base:
            text = "\n\n".join(demo_data.corpus(corpus_documents)).encode()
            import_run(project=project, format="text", stream=io.BytesIO(text), filename="demo-corpus.txt")
    return project


def prompts_to_write(project, count: int) -> list[str]:
    """The next `count` problems of the pool that are not in the project yet."""
    if count <= 0:
        return []
    have = set(Message.objects.filter(project=project, role=MessageRole.USER).values_list("text", flat=True))
    pool = demo_data.prompt_pool(len(have) + count + 50)
    return [p.prompt for p in pool if p.prompt not in have][:count]


def annotate(project, *, url: str = "", prompts: int = 0, seed: int = 0, password: str = DEMO_PASSWORD) -> dict:
    """Have the scripted annotators write `prompts` new prompts, then take every task waiting; return their counts."""
    texts = prompts_to_write(project, prompts)
    if url:
        members = annotators.team(url, project.id, password=password, seed=seed)
        return annotators.work_through(members, prompts=texts)
    with annotators.local_server() as local:
        members = annotators.team(local, project.id, password=password, seed=seed)
        return annotators.work_through(members, prompts=texts)
