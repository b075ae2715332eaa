"""Build trees and ranking items quickly for tests (bulk rows, as an import would write them)."""

from annotate.models import (
    CandidateSet,
    CandidateSetKind,
    Message,
    MessageRole,
    MessageSource,
    TaskKind,
    WorkItem,
)


def ranking_items(project, count: int, *, k: int = 4, overlap: int | None = None, kind=CandidateSetKind.RANKING):
    """Create `count` prompts, each with k imported replies in one candidate set with its item."""
    overlap = overlap or project.settings.overlap
    prompts = Message.objects.bulk_create(
        [
            Message(project=project, role=MessageRole.USER, text=f"What is {i} + {i}?", source=MessageSource.IMPORT)
            for i in range(count)
        ]
    )
    for prompt in prompts:
        prompt.root_id = prompt.id
    Message.objects.bulk_update(prompts, ["root"])
    replies = Message.objects.bulk_create(
        [
            Message(
                project=project,
                parent=prompt,
                root_id=prompt.id,
                depth=1,
                role=MessageRole.ASSISTANT,
                text=f"reply {j} to {prompt.id}",
                source=MessageSource.IMPORT,
            )
            for prompt in prompts
            for j in range(k)
        ]
    )
    sets = CandidateSet.objects.bulk_create(
        [
            CandidateSet(
                project=project,
                parent=prompt,
                kind=kind,
                message_ids=[reply.id for reply in replies[index * k : (index + 1) * k]],
            )
            for index, prompt in enumerate(prompts)
        ]
    )
    WorkItem.objects.bulk_create(
        [
            WorkItem(
                project=project,
                kind=TaskKind.RANKING if kind == CandidateSetKind.RANKING else TaskKind.COMPARE,
                candidate_set=candidate_set,
                needed=overlap,
                open_slots=overlap,
            )
            for candidate_set in sets
        ]
    )
    return sets
