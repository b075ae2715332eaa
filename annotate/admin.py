from django.contrib import admin

from annotate.models import Invite, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "guideline_version", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["project", "role", "note", "expires_at", "accepted_by", "revoked_at"]
    list_filter = ["role"]
