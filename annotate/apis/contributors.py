"""REST API for deleting one contributor's data from a project (admins): an annotator's or an imported author's."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.models import Role
from annotate.selectors import accounts as account_selectors
from annotate.services import accounts as account_services
from annotate.services import contributors

User = get_user_model()


class ContributorDeleteApi(APIView):
    """Delete one contributor's rankings, labels, reviews and messages (with the replies under them) from the
    project, so no later export carries them (admins). Name an annotator by `user_id` (a member, past or
    present), or an imported author by the `pseudonym` exports show; `remove_member` also takes the annotator
    out of the project. Answers how many rows of each kind went; 400 when nothing in the project is theirs."""

    class InputSerializer(serializers.Serializer):
        user_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
        pseudonym = serializers.CharField(required=False, max_length=200)
        remove_member = serializers.BooleanField(default=False)

        def validate(self, data):
            if ("user_id" in data) == ("pseudonym" in data):
                raise serializers.ValidationError("give either user_id or pseudonym")
            if data["remove_member"] and "user_id" not in data:
                raise serializers.ValidationError({"remove_member": "only an annotator (user_id) is a member"})
            return data

    class OutputSerializer(serializers.Serializer):
        counts = serializers.DictField(child=serializers.IntegerField())

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = None
        if "user_id" in data.validated_data:
            user = get_object_or_404(User, pk=data.validated_data["user_id"], memberships__project=project)
        with transaction.atomic():
            counts = contributors.contributor_delete(
                project=project, user=user, pseudonym=data.validated_data.get("pseudonym", ""), by=request.user
            )
            if data.validated_data["remove_member"]:
                account_services.membership_remove(project=project, user=user)
        return Response(self.OutputSerializer({"counts": counts}).data)
