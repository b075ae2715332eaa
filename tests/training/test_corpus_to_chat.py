"""From a dialogue corpus to a chat model, as a new user tries it first: Cornell-format files imported as
trusted demonstrations, one round that builds a base model from scratch on the dialogues and fine-tunes it on
them, the SFT model deployed and chatted with at two temperatures."""

import itertools
import json
import random

import pytest
from django.conf import settings
from django.core.management import call_command

from annotate.models import CorpusText, Message
from training.models import ModelKind, ModelVersion, RunStatus
from training.services import runs, serving, supervisor

pytestmark = [pytest.mark.slow, pytest.mark.training, pytest.mark.django_db(transaction=True)]

SEPARATOR = " +++$+++ "
# Small talk between two characters of each of three films: a greeting and its answer, a question and its
# answer, so that a model learns the turns' shape from a few dozen conversations.
GREETINGS = [("Hello, {name}.", "Hi. Good to see you."), ("Morning, {name}!", "Morning. Sleep well?"),
             ("Hey {name}, got a minute?", "Sure, what is it?"), ("Evening, {name}.", "Evening. Long day?")]
QUESTIONS = [("Where are you going?", "Out to the {place}."), ("What did you see at the {place}?", "Nothing much."),
             ("Shall we meet at the {place}?", "Yes, at noon."), ("Is the {place} far?", "Ten minutes on foot.")]
NAMES = ["Anna", "Ben", "Clara", "Dev", "Ellis", "Farah", "Gus", "Hana", "Ines", "Jon", "Kai", "Lena", "Milo", "Nora",
         "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tess", "Uma", "Vik", "Wren", "Yuri"]
PLACES = ["harbour", "station", "market", "library", "cinema"]


@pytest.fixture(autouse=True)
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    return tmp_path


def cornell_corpus(folder):
    """Write movie_lines.txt and movie_conversations.txt in the corpus' own format (latin-1, fields split by
    ' +++$+++ ', a conversation as its list of line ids): 96 conversations, each opening with a line of its own,
    so that the held-out split (a tenth of the opening lines, by their text) is never empty."""
    rng = random.Random(0)
    folder.mkdir()
    lines, chats = [], []
    for number, ((hello, reply), name) in enumerate(itertools.product(GREETINGS, NAMES)):
        movie = f"m{number % 3}"
        first, second = f"u{2 * (number % 3)}", f"u{2 * (number % 3) + 1}"
        place = rng.choice(PLACES)
        question, answer = rng.choice(QUESTIONS)
        ids = []
        for offset, (speaker, text) in enumerate([(first, hello), (second, reply), (first, question), (second, answer)]):
            line_id = f"L{number * 4 + offset}"
            ids.append(line_id)
            lines.append(SEPARATOR.join([line_id, speaker, movie, speaker.upper(), text.format(name=name, place=place)]))
        chats.append(SEPARATOR.join([first, second, movie, repr(ids)]))
    (folder / "movie_lines.txt").write_text("\n".join(lines) + "\n", encoding="latin-1")
    (folder / "movie_conversations.txt").write_text("\n".join(chats) + "\n", encoding="latin-1")
    return folder


def chat(deployment, text: str) -> str:
    return "".join(serving.chat_stream(deployment=deployment, turns=[{"role": "user", "content": text}]))


def test_a_cornell_corpus_becomes_a_chat_model_sampled_at_two_temperatures(project, owner, stores, capsys):
    from training.trainers import evaluate

    corpus = cornell_corpus(stores / "cornell")
    call_command("import_data", str(corpus), "--project", str(project.id), "--format", "cornell", "--trusted")
    assert "96 conversations" in capsys.readouterr().out
    # The dialogues are the base's pretraining text and, trusted, the demonstrations SFT imitates.
    assert CorpusText.objects.filter(project=project).count() == 96
    assert Message.objects.filter(project=project, role="assistant", review_state="accepted").count() == 2 * 96

    run = runs.run_create(project=project, by=owner, preset="tiny", recipe="sft", seed=1, config={
        "base": {"max_steps": 10, "context": 128}, "sft": {"max_steps": 16}})
    assert [stage.name for stage in run.stages.order_by("order")] == ["base", "sft"]
    status = supervisor.run_execute(run_id=run.id)
    run.refresh_from_db()
    assert status == RunStatus.SUCCEEDED, run.error
    versions = {v.kind: v for v in ModelVersion.objects.filter(project=project, run=run)}
    base, sft = versions[ModelKind.BASE], versions[ModelKind.SFT]
    assert sft.parent == base

    # On the held-out conversations, the SFT model predicts the replies better than the base it started from.
    held_out = settings.SNAPSHOT_STORE / sft.snapshot.folder / "sft-test.jsonl"
    assert held_out.read_text().strip(), "no conversation was held out"
    config = json.loads((settings.MODEL_STORE / sft.folder / "platform_training.json").read_text())["config"]
    base_loss = evaluate.evaluate_sft(str(settings.MODEL_STORE / base.folder), str(held_out), config)["eval_loss"]
    assert sft.metrics["eval_loss"] < base_loss, (sft.metrics["eval_loss"], base_loss)

    # Deployed, it answers a chat: greedy at temperature 0 (the same reply each time; at 0.01 the fresh-clone run
    # saw "." sampled 14 and 16 times), varied at a high one.
    cold = serving.deployment_create(project=project, model_version=sft, by=owner,
                                     sampling={"temperature": 0, "max_new_tokens": 16})
    replies = [chat(cold, "Hello, Anna.") for _ in range(3)]
    # The same reply each time (a model this small, trained 16 steps, may well end its reply at once: its most
    # likely first token can be the end, so the reply's being empty is no failure here).
    assert len(set(replies)) == 1, replies
    hot = serving.deployment_create(project=project, model_version=sft, by=owner, replace=True,
                                    sampling={"temperature": 1.5, "max_new_tokens": 16})
    replies = [chat(hot, "Hello, Anna.") for _ in range(4)]
    assert any(reply.strip() for reply in replies) and len(set(replies)) > 1, replies
