"""Reads for the queue: what a task shows, a person's history."""

import random

from django.db.models import QuerySet

from annotate.models import Message, Task, TaskKind
from annotate.rules import compare_order
from platform_common.raw_sql import prepared_cursor


def _path(by_id: dict, leaf_id: int) -> list:
    path, node = [], by_id.get(leaf_id)
    while node is not None:
        path.append(node)
        node = by_id.get(node.parent_id)
    return path[::-1]


def turn(message: Message) -> dict:
    return {"id": message.id, "role": message.role, "text": message.text}


# The item's candidate set (if any), the message it is about, and that message's whole tree.
ITEM_AND_TREE = """
WITH item AS (
    SELECT cs.message_ids, coalesce(cs.parent_id, w.message_id) AS leaf_id
    FROM annotate_workitem w LEFT JOIN annotate_candidateset cs ON cs.id = w.candidate_set_id
    WHERE w.id = %s
)
SELECT item.message_ids, item.leaf_id, m.id, m.parent_id, m.role, m.text
FROM item
JOIN annotate_message leaf ON leaf.id = item.leaf_id
JOIN annotate_message m ON m.root_id = leaf.root_id
"""


def task_payload(task: Task) -> dict:
    """Return everything a page or script needs to do the task, and nothing that biases it.

    Replies are shown without their author or model; ranking candidates in an order drawn
    per task, comparison replies as A and B. One query: the item and its whole tree.
    """
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
    if task.item_id is None:
        return data  # a new conversation: nothing to show yet
    with prepared_cursor() as cursor:
        cursor.execute(ITEM_AND_TREE, [task.item_id])
        rows = cursor.fetchall()
    message_ids, leaf_id = rows[0][0], rows[0][1]
    by_id = {row[2]: Message(id=row[2], parent_id=row[3], role=row[4], text=row[5]) for row in rows}
    data["conversation"] = [turn(m) for m in _path(by_id, leaf_id)]
    if message_ids is None:
        return data
    if task.kind == TaskKind.COMPARE:
        labelled = zip("AB", compare_order(task.id, message_ids))
    else:
        order = list(message_ids)
        random.Random(task.id).shuffle(order)
        labelled = ((str(index + 1), message_id) for index, message_id in enumerate(order))
    data["candidates"] = [
        {"id": message_id, "label": label, "text": by_id[message_id].text} for label, message_id in labelled
    ]
    return data


def tasks_of(*, project, annotator) -> QuerySet[Task]:
    """Return the annotator's tasks in the project, newest first, with what came of them."""
    return (
        Task.objects.filter(project=project, annotator=annotator).order_by("-created_at", "-id")
    )
