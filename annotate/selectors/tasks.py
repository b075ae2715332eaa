"""Reads for the queue: what a task shows, a person's history, a tree."""

import random

from django.db.models import QuerySet

from annotate.models import Message, Task, TaskKind
from annotate.services.judgements import compare_order


def conversation(message: Message | None) -> list[Message]:
    """Return the path from the root to `message`, inclusive (one query for the whole tree)."""
    if message is None:
        return []
    by_id = {m.id: m for m in Message.objects.filter(root_id=message.root_id).only(
        "id", "parent_id", "role", "text", "depth", "excluded"
    )}
    by_id.setdefault(message.id, message)
    path, node = [], by_id.get(message.id)
    while node is not None:
        path.append(node)
        node = by_id.get(node.parent_id)
    return path[::-1]


def turn(message: Message) -> dict:
    return {"id": message.id, "role": message.role, "text": message.text}


def task_payload(task: Task) -> dict:
    """Return everything a page or script needs to do the task, and nothing that biases it.

    Replies are shown without their author or model; ranking candidates in an order drawn
    per task, comparison replies as A and B.
    """
    item = task.item
    data = {
        "id": task.id,
        "kind": task.kind,
        "project_id": task.project_id,
        "state": task.state,
        "lease_expires_at": task.lease_expires_at,
        "guideline_version": task.guideline_version,
        "conversation": [],
        "candidates": [],
    }
    if item is None:
        return data  # a new conversation: nothing to show yet
    if item.candidate_set_id:
        candidate_set = item.candidate_set
        data["conversation"] = [turn(m) for m in conversation(candidate_set.parent)]
        texts = dict(Message.objects.filter(pk__in=candidate_set.message_ids).values_list("id", "text"))
        if task.kind == TaskKind.COMPARE:
            order = compare_order(task)
            data["candidates"] = [
                {"id": message_id, "label": label, "text": texts[message_id]}
                for label, message_id in zip("AB", order)
            ]
        else:
            order = list(candidate_set.message_ids)
            random.Random(task.id).shuffle(order)
            data["candidates"] = [
                {"id": message_id, "label": str(index + 1), "text": texts[message_id]}
                for index, message_id in enumerate(order)
            ]
    else:
        data["conversation"] = [turn(m) for m in conversation(item.message)]
    return data


def tasks_of(*, project, annotator) -> QuerySet[Task]:
    """Return the annotator's tasks in the project, newest first, with what came of them."""
    return (
        Task.objects.filter(project=project, annotator=annotator)
        .select_related("item__message", "item__candidate_set")
        .order_by("-created_at", "-id")
    )
