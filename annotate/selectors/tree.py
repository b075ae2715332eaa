"""Reads of conversation trees: a whole tree as its asker may see it."""

from django.shortcuts import get_object_or_404

from annotate.models import Membership, Message, Role

TURN_FIELDS = ("id", "parent_id", "depth", "role", "created_at")


def tree_messages(*, membership: Membership, root_id: int) -> list[dict]:
    """Return every message of the tree of `root_id` in the member's project, shallowest first.

    Annotators see the turns only: not where a reply came from (that would unblind rankings),
    and not the text of excluded messages. Reviewers and admins see everything. A message of
    another project is as unknown as one that does not exist (404).
    """
    root = get_object_or_404(Message, pk=root_id, project=membership.project)
    rows = Message.objects.filter(root_id=root.root_id).order_by("depth", "created_at").values(
        "id", "parent_id", "depth", "role", "text", "source", "review_state", "excluded", "created_at"
    )
    if membership.has_role(Role.REVIEWER):
        return list(rows)
    turns = []
    for row in rows:
        turn = {key: row[key] for key in TURN_FIELDS}
        turn["text"] = None if row["excluded"] else row["text"]
        turn["withheld"] = row["excluded"]
        turns.append(turn)
    return turns
