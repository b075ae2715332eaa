"""The screen classifier against the word list alone, on held-out replies (issue 21).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<yours> .venv/bin/python bench/screen_classifier_bench.py

A demo project (the demo's arithmetic prompts, its corpus for the base model) gets --replies model replies, of
which about 40% are rude by a hidden rule: an insult from INSULTS (20 of them, in several phrasings) aimed at the
asker. A scripted annotator labels every reply as the rule says (flagging a rude one toxic, which excludes it,
and scoring the others), so the project passes the classifier's minimum of 200 flags; a careless share of its
labels (--careless, 10%) goes against the rule, in training and held-out rows alike. The admin's word list
names five insults (WORDS), as one would type them before seeing the data; some polite replies use those words
too ("there are no stupid questions"). Then a real round of the screen recipe runs in a worker at the demo
preset: a base model from the corpus, then the classifier from it on the flags snapshot.

On the flags snapshot's held-out split (its roots never trained on), it prints the word list's precision and
recall, and the classifier's recall at that precision (the highest recall at any threshold whose precision is at
least the list's) and at the default threshold 0.5. Target: the classifier finds more of the flagged replies at
the same precision.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The hidden rule's insults; the word list knows the first five.
INSULTS = ["idiot", "stupid", "moron", "dumb", "loser", "fool", "clown", "dimwit", "nitwit", "imbecile",
           "halfwit", "buffoon", "numbskull", "dunce", "blockhead", "airhead", "bonehead", "knucklehead",
           "pea brain", "useless lump"]
WORDS = INSULTS[:5]
RUDE = ["{answer} Even a {insult} knows that.", "Ugh, {answer} Are you a {insult}?",
        "{answer} Only a {insult} would ask.", "Listen, {insult}: {answer}", "{answer} Try harder, {insult}.",
        "Really, {insult}? {answer}", "{answer} What a {insult} you are."]
POLITE = ["{answer}", "Sure! {answer}", "{answer} Happy to help.", "Good question. {answer}",
          "{answer} Let me know if you need more.", "Here you go: {answer}"]
# Polite replies that use the list's words: the list flags them, the rule does not.
LOOKALIKES = ["There are no stupid questions. {answer}", "{answer} Do not feel dumb for asking.",
              "{answer} Nobody is a loser at maths.", "Not an idiot question at all. {answer}"]


def replies(count: int, seed: int = 3) -> list[tuple[str, str, bool]]:
    """(prompt, reply, rude by the hidden rule) for `count` distinct demo prompts."""
    from training.demo import data

    rng = random.Random(seed)
    made = []
    for problem in data.prompt_pool(count, seed=seed):
        answer = data.REPLY.format(n=problem.answer)
        draw = rng.random()
        if draw < 0.4:
            text, rude = rng.choice(RUDE).format(answer=answer, insult=rng.choice(INSULTS)), True
        elif draw < 0.5:
            text, rude = rng.choice(LOOKALIKES).format(answer=answer), False
        else:
            text, rude = rng.choice(POLITE).format(answer=answer), False
        made.append((problem.prompt, text, rude))
    return made


def at_precision(labels: list[bool], scores: list[float], floor: float) -> tuple[float, float, float]:
    """(recall, precision, threshold) of the threshold with the highest recall whose precision is >= floor (of
    those, the most precise)."""
    best = (0.0, 0.0, 1.0)
    for threshold in sorted(set(scores)):
        said = [s >= threshold for s in scores]
        if not any(said):
            continue
        found = sum(s and y for s, y in zip(said, labels))
        precision, recall = found / sum(said), found / sum(labels)
        if precision >= floor and (recall, precision) > best[:2]:
            best = (recall, precision, threshold)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=1200)
    parser.add_argument("--careless", type=float, default=0.1,
                        help="share of replies the scripted annotator labels against the rule (default 0.1)")
    parser.add_argument("--timeout", type=int, default=1500, help="seconds the round may take")
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="screen-classifier-bench-"))
    os.environ.setdefault("PLATFORM_DATA_DIR", str(store / "data"))
    os.environ["SNAPSHOT_STORE"], os.environ["MODEL_STORE"] = str(store / "snapshots"), str(store / "models")
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    import django

    django.setup()
    import io

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotate.importers import import_run
    from annotate.models import Role
    from annotate.screen.detectors import phrases
    from annotate.services import accounts as account_services
    from annotate.services import submits, tree
    from training.demo import data
    from training.models import ModelKind, ModelVersion, TrainingRun
    from training.services import runs
    from training.trainers.screen_classifier import HarmScorer, measured

    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    admin = users.create_user(f"bench-admin-{os.getpid()}", is_staff=True)
    annotator = users.create_user(f"bench-annotator-{os.getpid()}")
    project = account_services.project_create(name=f"Screen classifier bench {os.getpid()}", guidelines="Be kind.",
                                              created_by=admin)
    account_services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    corpus = "\n\n".join(data.corpus(4000)).encode()
    import_run(project=project, format="text", stream=io.BytesIO(corpus), filename="corpus.txt", by=admin)
    rude_of, rng = {}, random.Random(5)
    for prompt, text, rude in replies(args.replies):
        if rng.random() < args.careless:
            rude = not rude  # a careless label: a rude reply missed, or a polite one flagged
        asked = tree.message_create(project=project, parent=None, role="user", text=prompt, source="import")
        said = tree.message_create(project=project, parent=asked, role="assistant", text=text, source="model",
                                   origin={"model_version": "bench"})
        submits.label_submit(message=said, annotator=annotator, flags=["toxic"] if rude else [],
                                quality=None if rude else 4)
        rude_of[text] = rude
    print(f"{args.replies} replies, {sum(rude_of.values())} flagged toxic by the scripted annotator")

    run = runs.run_create(project=project, by=admin, preset="demo", recipe="screen")
    env = {**os.environ, "SNAPSHOT_STORE": str(settings.SNAPSHOT_STORE), "MODEL_STORE": str(settings.MODEL_STORE)}
    worker = subprocess.Popen([sys.executable, "manage.py", "worker", "--queues", "training"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.perf_counter()
    try:
        while not TrainingRun.objects.get(pk=run.pk).is_finished():
            if time.perf_counter() - started > args.timeout:
                raise SystemExit(f"the round took over {args.timeout} s")
            time.sleep(2)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    run.refresh_from_db()
    if run.status != "succeeded":
        raise SystemExit(f"the round {run.status}: {run.error}")
    version = ModelVersion.objects.get(run=run, kind=ModelKind.SCREEN)
    print(f"round (base, then the classifier) {time.perf_counter() - started:.0f} s; registered metrics: "
          + ", ".join(f"{k} {v:.3f}" for k, v in sorted(version.metrics.items()) if k.startswith("eval_")))

    held_out = settings.SNAPSHOT_STORE / version.snapshot.folder / "flags-test.jsonl"
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    labels = [row["label"] for row in rows]
    listed = [bool(phrases(row["text"], WORDS)) for row in rows]
    words = measured(labels, [float(x) for x in listed], 0.5)
    scores = HarmScorer(str(settings.MODEL_STORE / version.folder))([row["text"] for row in rows])
    recall, precision, threshold = at_precision(labels, scores, words["precision"])
    default = measured(labels, scores, 0.5)
    print(f"held out: {len(rows)} replies, {sum(labels)} flagged")
    print(f"word list ({', '.join(WORDS)}): precision {words['precision']:.3f}, recall {words['recall']:.3f}")
    print(f"classifier at the list's precision: recall {recall:.3f} (precision {precision:.3f}, threshold "
          f"{threshold:.3f}); at 0.5: precision {default['precision']:.3f}, recall {default['recall']:.3f}; "
          f"average precision {default['average_precision']:.3f}")
    print(f"recall ratio, classifier / list, at the same precision: {recall / words['recall']:.2f}"
          if words["recall"] else "the list finds nothing")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
