"""REST API for the queue: next task, submit, skip, history, flags, trees, candidate sets, its order."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.accounts import paginated
from annotate.models import CandidateSet, CandidateSetKind, Flag, Message, Role, SkipReason, Task, TaskKind
from annotate.selectors import accounts as account_selectors
from annotate.selectors import gold as gold_selectors
from annotate.selectors import tasks as task_selectors
from annotate.selectors import tree as tree_selectors
from annotate.selectors import work as work_selectors
from annotate.services import priority, queue, submits, tree
from platform_common.serializers import StrictCharField


class TurnSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.CharField()
    text = serializers.CharField()


class CandidateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField(help_text="1..K for a ranking as shown; A or B for a comparison")
    text = serializers.CharField()


class TaskOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=TaskKind.choices)
    project_id = serializers.IntegerField()
    state = serializers.CharField()
    lease_expires_at = serializers.DateTimeField()
    guideline_version = serializers.IntegerField()
    conversation = TurnSerializer(many=True, help_text="root first; the last turn is what to act on")
    candidates = CandidateSerializer(many=True)


NextOutput = inline_serializer(
    "NextTask", {"task": TaskOutputSerializer(allow_null=True), "detail": serializers.CharField(required=False)}
)


def next_task_response(*, project, user, role, kind=None):
    task = queue.task_next(project=project, annotator=user, role=role, kind=kind)
    if task is None:
        # Paused by the project's quality control: say why, not "nothing is waiting".
        standing = gold_selectors.gold_standing(project=project, annotator=user)
        if standing.paused_reason:
            return {"task": None, "detail": standing.paused_reason}
        if standing.qualification_left:
            return {"task": None, "detail": (
                f"{standing.qualification_left} qualification task{'s' if standing.qualification_left > 1 else ''} "
                "to do before real work, and none is waiting for you: ask an admin to add quality checks"
            )}
        return {"task": None, "detail": "no task is waiting for you in this project right now"}
    # The payload is already plain data; TaskOutputSerializer documents it in the schema.
    return {"task": task_selectors.task_payload(task)}


class TaskNextApi(APIView):
    """Lease the next task (or get back the one you hold). Kinds follow the project's mix."""

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=TaskKind.choices, required=False)

    @extend_schema(request=InputSerializer, responses=NextOutput)
    def post(self, request, project_id):
        membership = account_selectors.membership_for(user=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            next_task_response(
                project=membership.project, user=request.user, role=membership.role, kind=data.validated_data.get("kind")
            )
        )


def own_task(request, task_id) -> Task:
    """Return the task if the asker is a member of its project; outsiders get 404."""
    task = get_object_or_404(Task, pk=task_id)
    account_selectors.membership_for(user=request.user, project_id=task.project_id)
    return task


class TaskDetailApi(APIView):
    @extend_schema(responses=TaskOutputSerializer)
    def get(self, request, task_id):
        task = own_task(request, task_id)
        if task.annotator_id != request.user.id:
            return Response({"task": ["this task is someone else's"]}, status=status.HTTP_403_FORBIDDEN)
        return Response(TaskOutputSerializer(task_selectors.task_payload(task)).data)


class TaskSubmitApi(APIView):
    """Submit a leased task. Send an idempotency key: a retry with it writes nothing new.

    Fields by kind: prompt, demonstration and edit (the mended reply): `text`; ranking: `tiers` (best first, ties in
    one list) or `all_bad`; compare: `choice` (A, B, tie, both_bad); label: `quality` (1-5)
    and/or `flags` and `rubrics` (scores by rubric key); review: `accepted` and `comment` (needed to reject).
    With `next: true` the reply also carries your next task.
    """

    class InputSerializer(serializers.Serializer):
        rubrics = serializers.DictField(required=False, help_text="label: scores 1-5 by the project's rubric keys")
        submit_key = StrictCharField(max_length=100)
        time_spent_ms = serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=submits.MAX_TIME_SPENT_MS
        )
        text = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
        tiers = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()), required=False)
        all_bad = serializers.BooleanField(required=False, default=False)
        choice = serializers.ChoiceField(choices=submits.COMPARE_CHOICES, required=False)
        quality = serializers.IntegerField(required=False, allow_null=True)
        flags = serializers.ListField(child=serializers.ChoiceField(choices=Flag.choices), required=False)
        accepted = serializers.BooleanField(required=False, allow_null=True, default=None)
        comment = StrictCharField(required=False, allow_blank=True)
        next = serializers.BooleanField(required=False, default=False)

    OutputSerializer = inline_serializer(
        "TaskSubmitted",
        {"result": serializers.DictField(), "next": NextOutput},
    )

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, task_id):
        membership = account_selectors.membership_for_task(user=request.user, task_id=task_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payload = dict(data.validated_data)
        submit_key = payload.pop("submit_key")
        time_spent_ms = payload.pop("time_spent_ms", None)
        want_next = payload.pop("next")
        result = submits.task_submit(
            task_id=task_id, annotator=request.user, submit_key=submit_key, payload=payload, time_spent_ms=time_spent_ms
        )
        body = {"result": result}
        if want_next:
            body["next"] = next_task_response(project=membership.project, user=request.user, role=membership.role)
        return Response(body)


class TaskSkipApi(APIView):
    """Give a task back; you will not get that item again. Optionally say why: `reason` (unclear, expertise,
    unsafe, broken, other) and `note` (your words, up to 300 characters; needed for other), counted for the
    project's admins on Progress."""

    class InputSerializer(serializers.Serializer):
        reason = serializers.ChoiceField(choices=SkipReason.choices, required=False, allow_blank=True, default="")
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)

    @extend_schema(request=InputSerializer, responses=TaskOutputSerializer)
    def post(self, request, task_id):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = queue.task_skip(task=own_task(request, task_id), annotator=request.user, **data.validated_data)
        return Response(TaskOutputSerializer(task_selectors.task_payload(task)).data)


class HistoryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    state = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    result = serializers.DictField()


class MyTaskListApi(APIView):
    """Your tasks in the project, newest first."""

    @extend_schema(responses=HistoryOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id)
        return paginated(self, task_selectors.tasks_of(project=project, annotator=request.user), HistoryOutputSerializer)


def project_message(request, project_id, message_id, role=Role.ANNOTATOR):
    project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=role)
    return project, get_object_or_404(Message, pk=message_id, project=project)


class MessageLabelApi(APIView):
    """Score (1-5) or flag any message of the project, outside the queue."""

    class InputSerializer(serializers.Serializer):
        quality = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=5)
        flags = serializers.ListField(child=serializers.ChoiceField(choices=Flag.choices), required=False, default=list)
        rubrics = serializers.DictField(required=False, help_text="scores 1-5 by the project's rubric keys")
        time_spent_ms = serializers.IntegerField(
            required=False, allow_null=True, min_value=0, max_value=submits.MAX_TIME_SPENT_MS
        )

    @extend_schema(request=InputSerializer, responses={201: inline_serializer("Labelled", {"label_id": serializers.IntegerField(), "excluded": serializers.BooleanField()})})
    def post(self, request, project_id, message_id):
        _, message = project_message(request, project_id, message_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = submits.label_submit(message=message, annotator=request.user, **data.validated_data)
        message.refresh_from_db(fields=["excluded"])
        return Response({"label_id": label.id, "excluded": message.excluded}, status=status.HTTP_201_CREATED)


class MessageClearApi(APIView):
    """Clear a flagged or rejected message (admin): it counts in exports again."""

    @extend_schema(request=None, responses=inline_serializer("Cleared", {"excluded": serializers.BooleanField()}))
    def post(self, request, project_id, message_id):
        _, message = project_message(request, project_id, message_id, role=Role.ADMIN)
        message = tree.message_clear(message=message)
        return Response({"excluded": message.excluded})


class TreeApi(APIView):
    """A whole conversation tree, by its root message id.

    Annotators see the turns only: not where a reply came from (that would unblind rankings),
    and not the text of excluded messages. Reviewers and admins see everything.
    """

    @extend_schema(responses=inline_serializer("Tree", {"messages": serializers.ListField(child=serializers.DictField())}))
    def get(self, request, project_id, root_id):
        membership = account_selectors.membership_for(user=request.user, project_id=project_id)
        return Response({"messages": tree_selectors.tree_messages(membership=membership, root_id=root_id)})


class CandidateSetCreateApi(APIView):
    """Make a ranking (2-9 replies) or blind comparison (2 replies) item (admin)."""

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=CandidateSetKind.choices)
        message_ids = serializers.ListField(child=serializers.IntegerField(), min_length=2, max_length=9)

    @extend_schema(request=InputSerializer, responses={201: inline_serializer("CandidateSetMade", {"id": serializers.IntegerField()})})
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        candidate_set = tree.candidate_set_create(project=project, origin={"by": request.user.id}, **data.validated_data)
        return Response({"id": candidate_set.id}, status=status.HTTP_201_CREATED)


def project_candidate_set(request, project_id, set_id) -> CandidateSet:
    project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.REVIEWER)
    return get_object_or_404(CandidateSet, pk=set_id, project=project)


# ---------------------------------------------------------------------------------------------
# The queue's order (admins): why each item is first, and pinning, boosting, freezing it.


class WorkItemPriorityOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    candidate_set_id = serializers.IntegerField(allow_null=True)
    message_id = serializers.IntegerField(allow_null=True)
    needed = serializers.IntegerField()
    done = serializers.IntegerField()
    open_slots = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    priority = serializers.FloatField()
    priority_boost = serializers.FloatField()
    priority_hold = serializers.CharField(help_text="'' computed, 'pinned' or 'frozen' by an admin")
    priority_why = serializers.DictField(
        help_text="per source (uncertainty, disagreement, coverage): value 0-1, weight and points; "
        "the boost, the total, Kendall's W and judgements so far"
    )
    signals = serializers.DictField(help_text="what training measured: the reward model's uncertainty and its detail")


class WorkItemPriorityListApi(APIView):
    """The items still needing people, in the order the queue hands them out, with why (admins)."""

    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=TaskKind.choices, required=False)

    @extend_schema(parameters=[FilterSerializer], responses=WorkItemPriorityOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        items = work_selectors.work_items_in_order(project=project, kind=filters.validated_data.get("kind"))
        return paginated(self, items, WorkItemPriorityOutputSerializer)


class ItemIdsSerializer(serializers.Serializer):
    item_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), min_length=1, max_length=10_000
    )


Changed = inline_serializer("PriorityChanged", {"changed": serializers.IntegerField()})


class WorkItemAssignApi(APIView):
    """Hand these items only to the named annotators (`annotators`: usernames of active members whose role may do
    them), or to anyone again with an empty list (admins). The queue offers an assigned item to nobody else."""

    class InputSerializer(ItemIdsSerializer):
        annotators = serializers.ListField(child=serializers.CharField(max_length=150), max_length=1000)

    @extend_schema(request=InputSerializer, responses=Changed)
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"changed": priority.items_assign(project=project, item_ids=data.validated_data["item_ids"],
                                                           usernames=data.validated_data["annotators"])})


class WorkItemPinApi(APIView):
    """Put these items first in the queue, in the order given (admins); a recompute leaves them there."""

    @extend_schema(request=ItemIdsSerializer, responses=Changed)
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = ItemIdsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"changed": priority.priority_pin(project=project, by=request.user, **data.validated_data)})


class WorkItemBoostApi(APIView):
    """Add `amount` to these items' computed priority (negative holds them back) (admins)."""

    class InputSerializer(ItemIdsSerializer):
        amount = serializers.FloatField(min_value=-1000, max_value=1000)

    @extend_schema(request=InputSerializer, responses=Changed)
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"changed": priority.priority_boost(project=project, by=request.user, **data.validated_data)})


class WorkItemFreezeApi(APIView):
    """Keep these items' order as it is now, whatever a recompute says (admins)."""

    @extend_schema(request=ItemIdsSerializer, responses=Changed)
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = ItemIdsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"changed": priority.priority_freeze(project=project, by=request.user, **data.validated_data)})


class WorkItemReleaseApi(APIView):
    """End a pin or freeze: these items get their computed priority back (admins)."""

    @extend_schema(request=ItemIdsSerializer, responses=Changed)
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = ItemIdsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"changed": priority.priority_release(project=project, by=request.user, **data.validated_data)})
