"""A project with everything a training round reads: text, accepted demonstrations, rankings."""

import io
import random

from annotate.importers import import_run
from annotate.models import Message, Ranking, ReviewState
from tests.annotate.factories import ranking_items


def arithmetic_project(project, annotator, *, prompts: int = 40, k: int = 3, seed: int = 0):
    """Fill the project with `prompts` sums, each with k replies ranked correct-first by `annotator`.

    The correct reply is an accepted demonstration; a small text corpus of sums is imported too.
    """
    rng = random.Random(seed)
    lines = [f"{a} plus {b} is {a + b}." for a, b in ((rng.randrange(10), rng.randrange(10)) for _ in range(200))]
    import_run(project=project, format="text", stream=io.BytesIO("\n\n".join(lines).encode()), filename="sums.txt")
    for number, candidate_set in enumerate(ranking_items(project, prompts, k=k)):
        # 100 different sums before one repeats, other ones for another seed: the held-out split goes by the
        # prompt's text, and ten texts held none out about one time in three.
        a, b = number % 10, (number // 10 + number * 7 + seed) % 10
        Message.objects.filter(pk=candidate_set.message_ids[0]).update(
            text=str(a + b), review_state=ReviewState.ACCEPTED, source="annotator", author=annotator,
        )
        for offset, wrong in enumerate(candidate_set.message_ids[1:], start=1):
            Message.objects.filter(pk=wrong).update(text=str(a + b + offset))
        Message.objects.filter(pk=Message.objects.get(pk=candidate_set.message_ids[0]).parent_id).update(
            text=f"What is {a} + {b}?"
        )
        Ranking.objects.create(candidate_set=candidate_set, annotator=annotator, tiers=[[m] for m in candidate_set.message_ids])
    return project
