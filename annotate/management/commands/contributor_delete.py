"""Delete one contributor's data from a project (same service as the API): an annotator's or an imported author's."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotate.importers.base import source_user_pseudonym
from annotate.models import Project
from annotate.services import accounts, contributors


class Command(BaseCommand):
    help = (
        "Delete one contributor's judgements and messages (with the replies under them) from a project, so no "
        "later export carries them; prints what went. Name an annotator (--user), or an imported author by "
        "the source's own user id (--source-user oasst:ID) or by the pseudonym exports show (--pseudonym)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="project id")
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="an annotator's username or user id")
        who.add_argument("--source-user", help="SOURCE:ID, an imported author's id in its source (oasst:<user_id>)")
        who.add_argument("--pseudonym", help="an imported author's pseudonym, as exports show it (oasst:...)")
        parser.add_argument("--remove-member", action="store_true", help="also take the annotator out of the project")

    def handle(self, *args, project, user, source_user, pseudonym, remove_member, **options):
        found = Project.objects.filter(pk=project).first()
        if found is None:
            raise CommandError(f"no project with id {project}")
        account = None
        if user is not None:
            users = get_user_model().objects
            account = users.filter(username=user).first() or (users.filter(pk=user).first() if user.isdigit() else None)
            if account is None:
                raise CommandError(f"no user {user!r}")
        elif source_user is not None:
            source, _, source_id = source_user.partition(":")
            if not source or not source_id:
                raise CommandError("--source-user is SOURCE:ID, e.g. oasst:6b1b4c3e-...")
            pseudonym = source_user_pseudonym(source, source_id)
        if remove_member and account is None:
            raise CommandError("--remove-member is for an annotator (--user)")
        try:
            with transaction.atomic():
                counts = contributors.contributor_delete(project=found, user=account, pseudonym=pseudonym or "", by=None)
                if remove_member:
                    accounts.membership_remove(project=found, user=account)
        except ValidationError as refused:
            raise CommandError(f"{'; '.join(refused.messages)} (nothing was deleted)") from None
        who = account.username if account else pseudonym
        self.stdout.write(f"Deleted {who}'s data from project {found.id}: "
                          + ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in counts.items()))
        if remove_member:
            self.stdout.write(f"{who} is no longer a member of the project")
