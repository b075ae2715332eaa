"""Serving models back: deployments, generation of candidate replies and arena pairs, and chats
turned into prompts. Replies go into annotate's trees through its services, so the rankings they
call for appear in annotators' queues like any other work."""

import dataclasses
import logging
import random
import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotate.models import CandidateSet, CandidateSetKind, Message, MessageRole, MessageSource, ScreenAction, ScreenWhere
from annotate.screen.redact import Placeholders
from annotate.services import screening, tree
from platform_common.errors import Conflict
from platform_common.jobs import Heartbeat, job_cancel_requested, job_claim, job_finish
from training import selectors
from training.models import (
    Backend,
    Deployment,
    GeneratedReply,
    GenerationJob,
    GenerationKind,
    JobStatus,
    ModelKind,
    ModelVersion,
)

logger = logging.getLogger(__name__)

DEFAULT_SAMPLING = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 64, "seed": 0}
# Prompts generated for in one call of a backend: big enough to batch well, small enough that a
# failure loses little and progress shows.
PROMPTS_PER_BATCH = 32
# How many times an empty reply is sampled again before its slot is left for the next job.
EMPTY_RETRIES = 3


def sampling_settings(values: dict | None):
    """Return SamplingSettings from a dict of overrides, or raise ValidationError naming the problem."""
    from training.generation import SamplingSettings

    unknown = set(values or {}) - set(DEFAULT_SAMPLING)
    if unknown:
        raise ValidationError({"sampling": f"unknown sampling settings: {', '.join(sorted(unknown))}"})
    try:
        return SamplingSettings(**{**DEFAULT_SAMPLING, **(values or {})})
    except (TypeError, ValueError) as error:
        raise ValidationError({"sampling": str(error)}) from None


@transaction.atomic
def deployment_create(
    *, project, model_version: ModelVersion, by, backend: str = Backend.TRANSFORMERS, url: str = "",
    served_model: str = "", sampling: dict | None = None, share: int = 1, replace: bool = False,
) -> Deployment:
    """Deploy a model version to the project; with `replace`, it becomes the only one deployed."""
    if model_version.project_id != project.id:
        raise ValidationError({"model_version": "that model version belongs to another project"})
    if model_version.kind not in (ModelKind.SFT, ModelKind.POLICY):
        raise ValidationError({"model_version": f"a {model_version.get_kind_display().lower()} does not write replies; "
                                                "deploy an SFT model or a policy"})
    if backend not in Backend.values:
        raise ValidationError({"backend": f"backend must be one of {', '.join(Backend.values)}"})
    if backend == Backend.OPENAI and not url.startswith(("http://", "https://")):
        raise ValidationError({"url": "the openai backend needs the server's http(s) URL"})
    if backend == Backend.OPENAI and (fence := server_fence(by=by)) and (problem := fence.problem(url)):
        raise ValidationError({"url": f"this server cannot be deployed: {problem}"})
    if not 1 <= share <= 9:
        raise ValidationError({"share": "share must be between 1 and 9"})
    chosen = sampling_settings(sampling).as_dict()
    active = Deployment.objects.select_for_update().filter(project=project, is_active=True)
    if replace:
        active.update(is_active=False, ended_at=timezone.now())
    elif active.filter(model_version=model_version).exists():
        raise Conflict({"model_version": f"{model_version.name} is already deployed to this project"})
    return Deployment.objects.create(
        project=project, model_version=model_version, backend=backend, url=url, served_model=served_model,
        sampling=chosen, share=share, deployed_by=by,
    )


def deployment_end(*, deployment: Deployment) -> Deployment:
    """Undeploy: the version writes no more replies; what it wrote stays."""
    if not deployment.is_active:
        raise Conflict({"deployment": "this deployment has already ended"})
    deployment.is_active, deployment.ended_at = False, timezone.now()
    deployment.save(update_fields=["is_active", "ended_at", "updated_at"])
    return deployment


def deployment_rollback(*, project, by) -> Deployment:
    """End the newest deployment and deploy again the version that was deployed before it."""
    with transaction.atomic():
        current = Deployment.objects.select_for_update().filter(project=project, is_active=True).order_by("-created_at").first()
        if current is None:
            raise Conflict({"deployment": "nothing is deployed to roll back from"})
        earlier = (
            Deployment.objects.filter(project=project, created_at__lt=current.created_at)
            .exclude(model_version=current.model_version).order_by("-created_at").first()
        )
        if earlier is None:
            raise Conflict({"deployment": f"{current.model_version.name} is the first version deployed; nothing to roll back to"})
        return deployment_create(
            project=project, model_version=earlier.model_version, by=by, backend=earlier.backend, url=earlier.url,
            served_model=earlier.served_model, sampling=earlier.sampling, share=earlier.share, replace=True,
        )


def generation_enqueue(
    *, project, by, kind: str = GenerationKind.CANDIDATES, max_prompts: int = 100, versions=(), retry_of=None,
) -> GenerationJob:
    """Queue a generation job: candidates from the deployed versions, or arena pairs of two versions."""
    if kind not in GenerationKind.values:
        raise ValidationError({"kind": f"kind must be one of {', '.join(GenerationKind.values)}"})
    if not 1 <= max_prompts <= 100_000:
        raise ValidationError({"max_prompts": "max_prompts must be between 1 and 100000"})
    versions = list(versions)
    if kind == GenerationKind.ARENA:
        if len(versions) != 2 or versions[0].pk == versions[1].pk:
            raise ValidationError({"versions": "an arena compares exactly two different model versions"})
        if any(v.project_id != project.id or v.kind not in (ModelKind.SFT, ModelKind.POLICY) for v in versions):
            raise ValidationError({"versions": "both versions must be SFT models or policies of this project"})
    elif not selectors.active_deployments(project=project).exists():
        raise ValidationError({"kind": "no model is deployed to this project: deploy a version first"})
    with transaction.atomic():
        job = GenerationJob.objects.create(project=project, kind=kind, max_prompts=max_prompts, requested_by=by,
                                           retry_of=retry_of)
        job.versions.set(versions)
        from training.tasks import generation_execute

        transaction.on_commit(lambda: generation_execute.defer(job_id=job.id))
    return job


def generation_retry(*, job: GenerationJob, by) -> GenerationJob:
    if job.status != JobStatus.FAILED:
        raise Conflict({"status": f"only a failed job can be retried; this one {job.status}"})
    return generation_enqueue(project=job.project, by=by, kind=job.kind, max_prompts=job.max_prompts,
                              versions=job.versions.all(), retry_of=job)


def generation_execute(*, job_id: int) -> str:
    """Run a queued generation job in a worker (platform_common.jobs: claimed, beating, cancellable between
    batches, failed with its reason); return its final status."""
    if not job_claim(GenerationJob, job_id):
        return GenerationJob.objects.get(id=job_id).status
    job = GenerationJob.objects.select_related("project", "project__settings").get(id=job_id)
    with Heartbeat(GenerationJob, job.id):
        try:
            if job.kind == GenerationKind.ARENA:
                _arena(job)
            else:
                _candidates(job)
        except GenerationStopped:
            job_finish(GenerationJob, job.id, JobStatus.CANCELLED, "cancelled; the replies written so far are kept")
        except Exception as error:  # noqa: BLE001 - the job must end failed and say why, never stay running
            logger.exception("generation job %s failed", job.id)
            job_finish(GenerationJob, job.id, JobStatus.FAILED, f"{type(error).__name__}: {error}")
        else:
            job_finish(GenerationJob, job.id, JobStatus.SUCCEEDED)
            from training.tasks import priorities_refresh_soon

            priorities_refresh_soon(project_id=job.project_id)  # new candidate sets to place in the queue's order
    return GenerationJob.objects.get(id=job_id).status


class GenerationStopped(Exception):
    """An admin cancelled the job, or the reaper gave it up, between two batches."""


def generation_cancel(*, job: GenerationJob) -> GenerationJob:
    """Stop a generation job: a queued one at once, a running one after the batch it is writing."""
    with transaction.atomic():
        locked = GenerationJob.objects.select_for_update().get(pk=job.pk)
        if locked.status == JobStatus.QUEUED:
            job_finish(GenerationJob, locked.id, JobStatus.CANCELLED, "cancelled before a worker started it")
        elif locked.status == JobStatus.RUNNING:
            GenerationJob.objects.filter(pk=locked.pk).update(cancel_requested=True, updated_at=timezone.now())
        else:
            raise Conflict({"status": f"generation job {locked.id} has ended ({locked.status}); nothing to cancel"})
    return GenerationJob.objects.get(pk=job.pk)


def prompts_needing_replies(*, project, limit: int) -> list[tuple[Message, int]]:
    """User messages that have no ranking yet, oldest first, each with how many of its K replies are missing
    (replies already there, a human demonstration say, count as candidates: with no ranking under
    their prompt they are in none)."""
    k = project.settings.replies_per_ranking
    ranked_prompts = CandidateSet.objects.filter(project=project, kind=CandidateSetKind.RANKING).values("parent_id")
    prompts = (
        Message.objects.filter(project=project, role=MessageRole.USER, excluded=False)
        .exclude(pk__in=ranked_prompts)
        .annotate(replies=Count("children", filter=Q(children__role=MessageRole.ASSISTANT, children__excluded=False)))
        .filter(replies__lt=k)
        .order_by("created_at", "id")[:limit]
    )
    return [(prompt, k - prompt.replies) for prompt in prompts]


def conversation_of(message: Message) -> list[dict]:
    """The path from the root to `message` as chat messages."""
    path = []
    while message is not None:
        path.append({"role": message.role, "content": message.text})
        message = message.parent
    return path[::-1]


def server_fence(*, by):
    """Return the fence on the servers `by` may deploy a model at, or None for any server.

    Staff, and the operator at `manage.py deploy` (no user), run the installation and may name any
    server; a project admin only those OPENAI_BACKEND_URLS allows (training/generation/fence.py).
    """
    from django.conf import settings

    from training.generation import ServerFence

    if by is None or by.is_staff:
        return None
    return ServerFence(settings.OPENAI_BACKEND_URLS)


def backend_of(deployment_or_version, *, sampling: dict | None = None):
    """The generation backend of a deployment (or of a version served locally).

    A server deployed by a project admin is fenced again on every request (its name may resolve elsewhere
    now, the allowed list may have changed), in the web process's chats as in the workers' generation.
    """
    from django.conf import settings

    from training.generation import backend_for

    if isinstance(deployment_or_version, Deployment) and deployment_or_version.backend == Backend.OPENAI:
        d = deployment_or_version
        return backend_for(kind="openai", url=d.url, model=d.served_model or None, fence=server_fence(by=d.deployed_by))
    version = getattr(deployment_or_version, "model_version", deployment_or_version)
    return backend_for(kind="transformers", model_dir=str(settings.MODEL_STORE / version.folder))


def _slots(deployments: list[Deployment], missing: int, rng: random.Random) -> list[Deployment]:
    """Share `missing` reply slots among the deployments by their weights, in a shuffled order."""
    total = sum(d.share for d in deployments)
    counts = {d.id: missing * d.share // total for d in deployments}
    by_weight = sorted(deployments, key=lambda d: (-d.share, d.id))
    for i in range(missing - sum(counts.values())):
        counts[by_weight[i % len(by_weight)].id] += 1
    slots = [d for d in deployments for _ in range(counts[d.id])]
    rng.shuffle(slots)
    return slots


def _candidates(job: GenerationJob) -> None:
    project = job.project
    deployments = list(selectors.active_deployments(project=project))
    if not deployments:
        raise ValidationError("no model is deployed to this project")
    rng = random.Random(job.id)
    backends = {d.id: backend_of(d) for d in deployments}
    settings = {d.id: sampling_settings(d.sampling) for d in deployments}
    needed = prompts_needing_replies(project=project, limit=job.max_prompts)
    for start in range(0, len(needed), PROMPTS_PER_BATCH):
        if job_cancel_requested(GenerationJob, job.id):
            raise GenerationStopped()
        batch = needed[start:start + PROMPTS_PER_BATCH]
        plans = [(prompt, _slots(deployments, missing, rng)) for prompt, missing in batch]
        replies: dict[tuple[int, int], list[str]] = {}
        for deployment in deployments:
            asked = [(prompt, slots.count(deployment)) for prompt, slots in plans if deployment in slots]
            for count in sorted({n for _, n in asked}):
                group = [prompt for prompt, n in asked if n == count]
                texts = backends[deployment.id].generate([conversation_of(p) for p in group], n=count,
                                                         settings=settings[deployment.id])
                for prompt, generated in zip(group, texts):
                    replies[(prompt.id, deployment.id)] = list(generated)
        written = 0
        for prompt, slots in plans:
            with transaction.atomic():
                for deployment in slots:
                    text = _nonempty(backends[deployment.id], prompt, replies[(prompt.id, deployment.id)].pop(),
                                     deployment.sampling)
                    if _reply_write(job, prompt, text, deployment.model_version, deployment=deployment,
                                    sampling=deployment.sampling, backend=backends[deployment.id].describe()):
                        written += 1
        GenerationJob.objects.filter(id=job.id).update(
            prompts_done=start + len(batch), replies_written=job.replies_written + written,
            replies_screened=job.replies_screened,
        )
        job.replies_written += written


def _nonempty(backend, prompt, text: str, sampling: dict) -> str:
    """Return `text`, or if it is empty (EOS first) a reply sampled again with the next seeds."""
    for attempt in range(1, EMPTY_RETRIES + 1):
        if not tree.text_problem(text, what="reply"):
            break
        retry = sampling_settings({**sampling, "seed": (sampling.get("seed") or 0) + attempt})
        text = backend.generate([conversation_of(prompt)], n=1, settings=retry)[0][0]
    return text


def _reply_write(job, prompt, text, version, *, deployment, sampling, backend, create_work=True) -> Message | None:
    """Write one generated reply under `prompt` with its provenance; an empty reply is dropped.

    A reply the project's screen blocks is not written either (so no task is made of it, and its prompt still
    misses a reply: the next generation job asks again). What the screen found is kept as a finding with the
    reply's text, for admins, and the job counts it in replies_screened. A reply the screen holds is written,
    excluded until an admin clears it (message_create does that).
    """
    if tree.text_problem(text, what="reply"):
        logger.info("dropped an empty or unusable reply of %s to message %s", version.name, prompt.id)
        return None
    try:
        with transaction.atomic():  # a savepoint: the prompt's other replies in this transaction stay written
            # The job's project object, not each prompt's own: the screen keeps its settings on it, read once a job.
            message = tree.message_create(
                project=job.project, parent=prompt, role=MessageRole.ASSISTANT, text=text,
                source=MessageSource.MODEL, create_work=create_work,
                origin={"model_version": version.name, "model_version_id": version.id, "sampling": sampling,
                        "backend": backend.get("backend", "")},
            )
    except screening.ScreenBlocked as blocked:
        screening.findings_save(screening.findings_rows(
            project=job.project, verdict=blocked.verdict, where=ScreenWhere.GENERATION, text=text.strip(),
            model_version_id=version.id,
        ))
        job.replies_screened += 1
        logger.info("the screen blocked a reply of %s to message %s: %s", version.name, prompt.id,
                    blocked.verdict.describe(ScreenAction.BLOCK))
        return None
    GeneratedReply.objects.create(message=message, model_version=version, deployment=deployment, job=job,
                                  sampling=sampling, backend=backend)
    return message


def _arena(job: GenerationJob) -> None:
    """Blind A/B items: one reply from each of two versions to the same prompts, as compare tasks."""
    project = job.project
    first, second = job.versions.order_by("id")
    sampling = dict(DEFAULT_SAMPLING)
    settings = sampling_settings(sampling)
    prompts = list(
        Message.objects.filter(project=project, role=MessageRole.USER, excluded=False, depth=0).order_by("created_at", "id")
        [: job.max_prompts]
    )
    replies = {}
    for version in (first, second):
        backend = backend_of(version)
        for start in range(0, len(prompts), PROMPTS_PER_BATCH):
            if job_cancel_requested(GenerationJob, job.id):
                raise GenerationStopped()
            group = prompts[start:start + PROMPTS_PER_BATCH]
            for prompt, texts in zip(group, backend.generate([conversation_of(p) for p in group], n=1, settings=settings)):
                replies[(prompt.id, version.id)] = (_nonempty(backend, prompt, texts[0], sampling), backend.describe())
    written = done = 0
    for prompt in prompts:
        with transaction.atomic():
            messages = []
            for version in (first, second):
                text, described = replies[(prompt.id, version.id)]
                message = _reply_write(job, prompt, text, version, deployment=None, sampling=sampling, backend=described,
                                       create_work=False)
                if message:
                    messages.append(message)
            if len(messages) == 2:
                tree.candidate_set_create(
                    project=project, message_ids=[m.id for m in messages], kind=CandidateSetKind.COMPARE,
                    origin={"arena": [first.name, second.name]},
                )
                written += 2
        done += 1
    GenerationJob.objects.filter(id=job.id).update(prompts_done=done, replies_written=written,
                                                   replies_screened=job.replies_screened)


# How long a chat reply's signature lets it be saved as the model's reply (chat_reply_sign).
CHAT_REPLY_MAX_AGE_SECONDS = 24 * 3600
_CHAT_SALT = "training.chat-reply"


def _chat_digest(turns: list[dict]) -> str:
    import hashlib
    import json

    plain = [{"role": turn["role"], "content": turn["content"]} for turn in turns]
    return hashlib.sha256(json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def chat_reply_sign(*, project, user, version: ModelVersion, turns: list[dict], reply: str) -> str:
    """Return a signature of `reply` as the reply `version` generated for `user` after `turns`.

    A chat runs in the browser, which sends its turns back with each message; what the server generated is
    known only at the moment it streams it. The signature (Django's signing, under SECRET_KEY) travels with the
    reply, and chat_to_prompt stores as the model's reply only text whose signature matches: an annotator cannot
    put words under a model version's name.
    """
    from django.core import signing

    return signing.dumps({"p": project.id, "u": user.id, "v": version.id,
                          "h": _chat_digest([*turns, {"role": MessageRole.ASSISTANT, "content": reply}])},
                         salt=_CHAT_SALT, compress=True)


def _chat_reply_version(*, project, user, turns: list[dict], index: int) -> ModelVersion:
    """Return the version whose reply turns[index] is, by its signature; refuse one the server did not write."""
    from django.core import signing

    refused = ValidationError({"turns": f"turn {index + 1} is not a reply this server generated for you in this "
                                        "chat (or it was changed since): only the model's own replies are saved"})
    try:
        signed = signing.loads(str(turns[index].get("signature") or ""), salt=_CHAT_SALT,
                               max_age=CHAT_REPLY_MAX_AGE_SECONDS)
    except signing.BadSignature:
        raise refused from None
    if (signed.get("p"), signed.get("u"), signed.get("h")) != (project.id, user.id, _chat_digest(turns[:index + 1])):
        raise refused
    version = ModelVersion.objects.filter(project=project, pk=signed.get("v")).first()
    if version is None:
        raise refused
    return version


def chat_to_prompt(*, project, user, turns: list[dict]) -> Message:
    """Write a chat with the deployed model into a conversation tree; its last user turn becomes a
    prompt in the queue (it gets demonstrations, and replies at the next generation).

    Each model reply is stored as the version that wrote it, and only as the server generated it: every
    assistant turn carries the signature the chat's stream gave it (chat_reply_sign). The chat may be no
    deeper than the project allows (its deepest turn), refused with the reason before anything is written.
    """
    if not turns or turns[-1].get("role") != MessageRole.USER:
        raise ValidationError({"turns": "a chat becomes a prompt when it ends with your message"})
    for index, turn in enumerate(turns):
        expected = MessageRole.USER if index % 2 == 0 else MessageRole.ASSISTANT
        if turn.get("role") != expected or not isinstance(turn.get("content"), str):
            raise ValidationError({"turns": f"turn {index + 1} must be a {expected} message with text"})
    versions = {index: _chat_reply_version(project=project, user=user, turns=turns, index=index)
                for index, turn in enumerate(turns) if turn["role"] == MessageRole.ASSISTANT}
    with transaction.atomic():
        parent = None
        for index, turn in enumerate(turns):
            last = index == len(turns) - 1
            if turn["role"] == MessageRole.USER:
                parent = tree.message_create(
                    project=project, parent=parent, role=MessageRole.USER, text=turn["content"],
                    source=MessageSource.ANNOTATOR, author=user, guideline_version=project.guideline_version,
                    create_work=last,
                )
            else:
                version = versions[index]
                reply = tree.message_create(
                    project=project, parent=parent, role=MessageRole.ASSISTANT, text=turn["content"],
                    source=MessageSource.MODEL, create_work=False,
                    origin={"model_version": version.name, "model_version_id": version.id, "chat": True},
                )
                GeneratedReply.objects.create(message=reply, model_version=version, sampling={}, backend={"chat": True})
                parent = reply
    return parent


def chat_stream(*, deployment: Deployment, turns: list[dict]):
    """Yield the deployed model's reply to a chat in chunks as they are generated; a GenerationError
    (before the first chunk or midway) says why it stopped."""
    from training.generation import conversation_problems

    problems = conversation_problems(turns)
    if problems:
        raise ValidationError({"turns": problems})
    backend = backend_of(deployment)
    plain = [{"role": turn["role"], "content": turn["content"]} for turn in turns]  # not the replies' signatures
    return backend.stream(plain, settings=sampling_settings({**deployment.sampling, "seed": None}))


# The end of a sentence in a streamed reply: . ! ? or a newline, followed by white space (a sentence at the
# stream's end needs none). An email's or a number's dots are followed by more of it, so they end nothing.
_SENTENCE_END = re.compile(r"[.!?\n](?=\s)")
CHAT_WITHHELD_NOTICE = "This reply was withheld by the project's content screen."


class ChatWithheld:
    """The last item of a screened chat stream whose reply the screen stopped: show `notice` instead."""

    def __init__(self, notice: str = CHAT_WITHHELD_NOTICE):
        self.notice = notice


def chat_screened(*, project, user, version: ModelVersion, chunks):
    """Yield a chat reply's text as it may be shown, screened sentence by sentence as each completes.

    With the project's screen off, the chunks pass as they come. With it on, text waits until its sentence
    ends (or the stream does) and is screened as the model's; a sentence with a finding that blocks or holds
    stops the generation, and a ChatWithheld comes last instead of more text (the browser replaces what it
    showed with the notice). Redacted kinds are shown as placeholders ({{EMAIL_1}}), numbered through the reply.
    Every finding is kept for admins with the original reply as far as it was generated (where=chat).
    """
    settings = screening.screen_settings(project=project)
    if not settings.enabled:
        yield from chunks
        return
    chunks = iter(chunks)
    placeholders = Placeholders()
    original, released = "", 0
    verdict = screening.Verdict()  # every finding so far, its span in `original`
    stopped = False
    try:
        ended = False
        while not ended:
            chunk = next(chunks, None)
            if chunk is None:
                ended = True
            else:
                original += chunk
            while released < len(original):
                match = _SENTENCE_END.search(original, released)
                if match is None and not ended:
                    break
                end = match.end() if match else len(original)
                sentence = original[released:end]
                found = screening.texts_screen(project=project, texts=[sentence], source="model", settings=settings)[0]
                for span, action in zip(found.spans, found.actions):
                    verdict.spans.append(dataclasses.replace(span, start=span.start + released,
                                                             end=span.end + released))
                    verdict.actions.append(action)
                if found.action in (ScreenAction.BLOCK, ScreenAction.HOLD):
                    stopped = True
                    yield ChatWithheld()
                    return
                redacted = [(span.start, span.end, span.kind) for span, action in zip(found.spans, found.actions)
                            if action == ScreenAction.REDACT]
                released = end
                yield placeholders.redact(sentence, redacted) if redacted else sentence
    finally:
        if hasattr(chunks, "close"):
            chunks.close()  # a stopped reply (or a client gone) stops the generation
        if verdict.spans:
            screening.findings_save(screening.findings_rows(
                project=project, verdict=verdict, where=ScreenWhere.CHAT, text=original, user=user,
                model_version_id=version.id,
            ))
            if stopped:
                logger.info("the screen withheld a chat reply of %s: %s", version.name, verdict.describe())
