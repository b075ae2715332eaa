"""Rules of the queue that both the services (which write) and the selectors (which read) follow:
who may do which kind of task, and in what order a blind comparison shows its two replies.

Plain functions of their arguments: no queries, no writes, so either layer may import them.
"""

from annotate.kinds import KINDS
from annotate.models import ROLE_RANK, Role

# Kinds that need more than the annotator role (annotate.kinds says each kind's).
KIND_ROLE = {name: kind.role for name, kind in KINDS.items() if kind.role != Role.ANNOTATOR}


def role_may_do(*, role: str, kind: str) -> bool:
    """Say whether a member with `role` may do tasks of `kind`."""
    return ROLE_RANK[role] >= ROLE_RANK[KIND_ROLE.get(kind, Role.ANNOTATOR)]


def allowed_kinds(*, role: str, weights: dict[str, float]) -> list[str]:
    """Return the kinds the project hands out (weight above 0) that a member with `role` may do."""
    return [kind for kind, weight in weights.items() if weight > 0 and role_may_do(role=role, kind=kind)]


def compare_order(task_id: int, message_ids: list[int]) -> list[int]:
    """Return the two replies in the order a task shows them as A and B.

    The order is drawn per task (not stored with the set), so position bias averages out.
    """
    first, second = message_ids
    return [first, second] if task_id % 2 == 0 else [second, first]
