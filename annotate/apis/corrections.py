"""REST API for correcting judgements: an annotator changes or withdraws their own ranking or label within the
project's correction window, an admin withdraws anyone's; reviewers and admins read a message's trail."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.tasks import project_message
from annotate.models import Flag, Label, Ranking, Role
from annotate.selectors import corrections as correction_selectors
from annotate.services import corrections


def _member_judgement(request, model, pk):
    """The ranking or label, if the user is an active member of its project (else 404: not even that it exists)."""
    project = "candidate_set__project" if model is Ranking else "message__project"
    found = model.objects.filter(pk=pk, **{f"{project}__memberships__user": request.user,
                                           f"{project}__memberships__is_active": True})
    return get_object_or_404(found)


class RankingCorrectApi(APIView):
    """Change your ranking (`tiers` best first, or `all_bad`) within the project's `correction_minutes`."""

    class InputSerializer(serializers.Serializer):
        tiers = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()), required=False)
        all_bad = serializers.BooleanField(required=False, default=False)

    @extend_schema(request=InputSerializer, responses=inline_serializer(
        "RankingChanged", {"id": serializers.IntegerField(), "tiers": serializers.ListField(), "all_bad": serializers.BooleanField()}))
    def patch(self, request, ranking_id):
        ranking = _member_judgement(request, Ranking, ranking_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ranking = corrections.ranking_change(ranking=ranking, by=request.user, **data.validated_data)
        return Response({"id": ranking.id, "tiers": ranking.tiers, "all_bad": ranking.all_bad})


class RankingWithdrawApi(APIView):
    """Withdraw a ranking: yours within the correction window, anyone's as a project admin. Its set needs someone
    again; the trail keeps what it was."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request, ranking_id):
        corrections.ranking_withdraw(ranking=_member_judgement(request, Ranking, ranking_id),
                                     by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LabelCorrectApi(APIView):
    """Change your label (`quality` 1-5, `flags`, `rubrics`; a field left out keeps its value) within the
    project's `correction_minutes`."""

    class InputSerializer(serializers.Serializer):
        quality = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=5)
        flags = serializers.ListField(child=serializers.ChoiceField(choices=Flag.choices), required=False)
        rubrics = serializers.DictField(required=False, help_text="scores 1-5 by rubric key")

    @extend_schema(request=InputSerializer, responses=inline_serializer(
        "LabelChanged", {"id": serializers.IntegerField(), "quality": serializers.IntegerField(allow_null=True),
                         "flags": serializers.ListField()}))
    def patch(self, request, label_id):
        label = _member_judgement(request, Label, label_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data  # a field left out keeps its value
        label = corrections.label_change(label=label, by=request.user, quality=given.get("quality", label.quality),
                                         flags=given.get("flags", label.flags), rubrics=given.get("rubrics"))
        return Response({"id": label.id, "quality": label.quality, "flags": label.flags})


class LabelWithdrawApi(APIView):
    """Withdraw a label: yours within the correction window, anyone's as a project admin."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request, label_id):
        corrections.label_withdraw(label=_member_judgement(request, Label, label_id), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JudgementReviewApi(APIView):
    """Accept a ranking or a label, or overrule it (`accepted: false` and a `comment`: why), as a reviewer of its
    project; an overruled one leaves every export. A later verdict replaces the earlier; both stay in the trail."""

    model = None

    class InputSerializer(serializers.Serializer):
        accepted = serializers.BooleanField()
        comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    @extend_schema(request=InputSerializer, responses=inline_serializer(
        "Verdict", {"id": serializers.IntegerField(), "verdict": serializers.CharField(), "comment": serializers.CharField()}))
    def post(self, request, judgement_id):
        judgement = _member_judgement(request, self.model, judgement_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        judgement = corrections.judgement_review(judgement=judgement, by=request.user, **data.validated_data)
        return Response({"id": judgement.id, "verdict": judgement.verdict, "comment": judgement.verdict_comment})


class RankingReviewApi(JudgementReviewApi):
    __doc__ = JudgementReviewApi.__doc__
    model = Ranking


class LabelReviewApi(JudgementReviewApi):
    __doc__ = JudgementReviewApi.__doc__
    model = Label


class MessageTrailApi(APIView):
    """Every change and withdrawal of the labels on a message and of the rankings of the sets it is in, oldest
    first, with who and when, before and after (reviewers and admins)."""

    @extend_schema(responses=inline_serializer("Trail", {"entries": serializers.ListField(child=serializers.DictField())}))
    def get(self, request, project_id, message_id):
        _, message = project_message(request, project_id, message_id, role=Role.REVIEWER)
        return Response({"entries": correction_selectors.message_trail(message=message)})
