"""REST API for accounts, projects, members and invites. One APIView per operation."""

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.selectors import accounts as account_selectors
from annotate.selectors import guidelines as guideline_selectors
from annotate.services import accounts as account_services
from annotate.models import Invite, Role
from platform_common.pagination import Pagination
from platform_common.serializers import StrictCharField, whole_number

User = get_user_model()


def paginated(view: APIView, queryset, serializer_class):
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


class TokenCreateApi(APIView):
    """Exchange a username and password for an API token (the same one until revoked)."""

    permission_classes = [AllowAny]
    # Password guessing is stopped by django-axes inside authenticate() (settings: AXES_*).
    throttle_classes = []

    class InputSerializer(serializers.Serializer):
        username = StrictCharField()
        password = StrictCharField(style={"input_type": "password"})

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, auth=[])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if getattr(request, "axes_locked_out", False):
            # Axes flags the request it was given, here DRF's; its middleware only sees Django's, so the
            # API answers the lockout itself.
            seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
            return Response(
                {"detail": f"too many wrong passwords for this account from your address: try again in "
                           f"{seconds // 60} minutes"},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(seconds)},
            )
        if user is None:
            return Response(
                {"detail": "wrong username or password, or the account is deactivated"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        token = account_services.token_create(user=user)
        return Response(self.OutputSerializer({"token": token.key}).data, status=status.HTTP_201_CREATED)


class TokenRevokeApi(APIView):
    """Revoke the token you authenticate with (or your token, from a browser session)."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        account_services.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        is_staff = serializers.BooleanField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        return Response(self.OutputSerializer(request.user).data)


class ProjectOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    guidelines = serializers.CharField()
    guideline_version = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class ProjectListApi(APIView):
    """List the projects you are a member of."""

    @extend_schema(responses=ProjectOutputSerializer(many=True))
    def get(self, request):
        projects = account_selectors.projects_for_user(user=request.user).order_by("id")
        return paginated(self, projects, ProjectOutputSerializer)


class ProjectCreateApi(APIView):
    """Create a project (site staff); you become its admin."""

    class InputSerializer(serializers.Serializer):
        name = StrictCharField(max_length=200)
        description = StrictCharField(required=False, allow_blank=True, default="")
        guidelines = StrictCharField(required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: ProjectOutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = account_services.project_create(created_by=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses=ProjectOutputSerializer)
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id)
        return Response(ProjectOutputSerializer(project).data)


class ProjectGuidelinesUpdateApi(APIView):
    """Replace the guidelines (admin); the guideline version goes up by one."""

    class InputSerializer(serializers.Serializer):
        guidelines = StrictCharField(allow_blank=True)

    @extend_schema(request=InputSerializer, responses=ProjectOutputSerializer)
    def put(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = account_services.project_update_guidelines(project=project, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data)


class GuidelineVersionsApi(APIView):
    """The versions of the project's guidelines, newest first, with their texts (members); with `from` and `to`
    (version numbers), also what changed between the two, as unified diff lines each with its kind."""

    @extend_schema(
        parameters=[OpenApiParameter("from", int, required=False), OpenApiParameter("to", int, required=False)],
        responses=inline_serializer("GuidelineVersions", {"versions": serializers.ListField(),
                                                          "diff": serializers.DictField(allow_null=True)}),
    )
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id)
        versions = guideline_selectors.guideline_versions(project=project)
        body = {"versions": [{**version, "at": version["at"].isoformat() if version["at"] else None}
                             for version in versions], "diff": None}
        asked = {name: request.query_params.get(name) for name in ("from", "to")}
        if any(asked.values()):
            numbers = {}
            for name, raw in asked.items():
                if not whole_number(raw or ""):
                    raise ValidationError({name: f"a version number, not {(raw or '')[:20]!r}"})
                numbers[name] = int(raw)
            body["diff"] = guideline_selectors.guideline_diff(project=project, old=numbers["from"], new=numbers["to"],
                                                            versions=versions)
        return Response(body)


class MemberOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()
    is_active = serializers.BooleanField()


class MemberListApi(APIView):
    """List a project's members (admin)."""

    @extend_schema(responses=MemberOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return paginated(self, account_selectors.members_of(project=project), MemberOutputSerializer)


class MemberUpdateApi(APIView):
    """Change a member's role, or remove them from the project (admin)."""

    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices)

    def _target(self, request, project_id, user_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        user = get_object_or_404(User, pk=user_id, memberships__project=project)
        return project, user

    @extend_schema(request=InputSerializer, responses=MemberOutputSerializer)
    def patch(self, request, project_id, user_id):
        project, user = self._target(request, project_id, user_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = account_services.membership_set(project=project, user=user, role=data.validated_data["role"])
        return Response(MemberOutputSerializer(membership).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, project_id, user_id):
        project, user = self._target(request, project_id, user_id)
        account_services.membership_remove(project=project, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InviteOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    token = serializers.CharField()
    role = serializers.CharField()
    note = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField()

    def get_url(self, invite) -> str:
        return self.context["request"].build_absolute_uri(f"/invite/{invite.token}/")


class InviteCreateApi(APIView):
    """Create a single-use invite link to the project with a role (admin)."""

    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices, default=Role.ANNOTATOR)
        note = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
        days = serializers.IntegerField(required=False, help_text="how long the link lasts; default INVITE_DAYS (7)")

    @extend_schema(request=InputSerializer, responses={201: InviteOutputSerializer})
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invite = account_services.invite_create(project=project, created_by=request.user, **data.validated_data)
        return Response(
            InviteOutputSerializer(invite, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class InviteListApi(APIView):
    """List the project's open invites, newest first (admin): not used, revoked or expired, and made by
    someone who is still an admin (an invite dies with its creator's role)."""

    @extend_schema(responses=InviteOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        paginator = Pagination()
        page = paginator.paginate_queryset(account_selectors.invites_open(project=project), request, view=self)
        return paginator.get_paginated_response(
            InviteOutputSerializer(page, many=True, context={"request": request}).data
        )


class InviteRevokeApi(APIView):
    """Revoke an invite of the project (admin): its link stops working. A used invite stays used."""

    @extend_schema(request=None, responses=InviteOutputSerializer)
    def post(self, request, project_id, invite_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        invite = get_object_or_404(Invite, pk=invite_id, project=project)
        invite = account_services.invite_revoke(invite=invite)
        return Response(InviteOutputSerializer(invite, context={"request": request}).data)


class InviteAcceptApi(APIView):
    """Join the invite's project with your account."""

    @extend_schema(request=None, responses=MemberOutputSerializer)
    def post(self, request, token):
        membership = account_services.invite_accept(token=token, user=request.user)
        return Response(MemberOutputSerializer(membership).data)


class UserDeactivateApi(APIView):
    """Deactivate an account (site staff): no more logins, its tokens and sessions end."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={204: None})
    def post(self, request, user_id):
        user = get_object_or_404(User, pk=user_id)
        account_services.user_deactivate(user=user, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
