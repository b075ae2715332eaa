"""The training side of the queue's priorities: how unsure the reward model is of each open set.

annotate computes what it can see (disagreement, coverage of prompts) and never loads a model;
this service scores each ranking and comparison that still needs people with the project's
reward model, measures what only training knows (which model version wrote which reply), writes
both through annotate's service (`priority_signals_write`) and ends with annotate's recompute.

Uncertainty signals (`signal`), each in [0, 1], 1 the most unsure:
- gap: the score gaps between the set's candidates, as Bradley-Terry reads them: each pair's
  probability p = sigmoid(s_a - s_b) gives 4 p (1 - p), 1 for a tie, near 0 for a wide gap; the
  set's value is the mean over its pairs. One forward pass per candidate.
- dropout: `passes` forward passes with dropout on (Monte Carlo dropout): for each pair, the share
  p of passes that put a above b gives 4 p (1 - p), so the signal is how often the passes disagree
  on the pair's order. A model trained without dropout gets dropout at `dropout_rate` at scoring.
- versions: two reward versions (the newest and the one before): the share of pairs they order
  differently. Needs two reward versions; with one it falls back to gap.
Coverage of model versions: each set's replies' versions, by how few judgements their replies have
had so far (1 - n / the most-judged version's n), averaged over the set's model replies.
"""

import math
import time
from itertools import combinations

import torch
from django.conf import settings

from annotate.models import CandidateSet, Project
from annotate.selectors import work as work_selectors
from annotate.services import priority as priority_services
from training.models import GeneratedReply, ModelKind, ModelVersion
from training.trainers.evaluate import RewardScorer

SIGNALS = ("gap", "dropout", "versions")
# Sets scored between looks at the clock: the time cap is checked this often.
CHUNK = 64


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def gap_uncertainty(scores: list[float]) -> float:
    """Return the mean over pairs of 4 p (1 - p), p = sigmoid of the pair's score gap."""
    pairs = list(combinations(scores, 2))
    if not pairs:
        return 0.0
    return sum(4 * _sigmoid(a - b) * (1 - _sigmoid(a - b)) for a, b in pairs) / len(pairs)


def passes_uncertainty(passes: list[list[float]]) -> float:
    """Return the mean over pairs of 4 p (1 - p), p = the share of passes putting a above b (ties half)."""
    n = len(passes[0])
    pairs = list(combinations(range(n), 2))
    if not pairs:
        return 0.0
    total = 0.0
    for a, b in pairs:
        p = sum(1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0 for s in passes) / len(passes)
        total += 4 * p * (1 - p)
    return total / len(pairs)


def discordance(first: list[float], second: list[float]) -> float:
    """Return the share of pairs that two scorings order differently."""
    pairs = list(combinations(range(len(first)), 2))
    if not pairs:
        return 0.0
    return sum((first[a] - first[b]) * (second[a] - second[b]) < 0 for a, b in pairs) / len(pairs)


def reward_versions(project: Project) -> list[ModelVersion]:
    """Return the project's reward versions, newest first."""
    return list(ModelVersion.objects.filter(project=project, kind=ModelKind.REWARD).order_by("-version"))


def _scorer(version: ModelVersion, *, batch_size: int) -> RewardScorer:
    max_length = int((version.config or {}).get("max_length") or 512)
    return RewardScorer(str(settings.MODEL_STORE / version.folder), max_length=max_length, batch_size=batch_size)


def _chats(rows: list[dict]) -> list[list[dict]]:
    return [row["conversation"] + [{"role": "assistant", "content": c["text"]}] for row in rows for c in row["candidates"]]


def _per_set(rows: list[dict], flat: list[float]) -> list[list[float]]:
    out, start = [], 0
    for row in rows:
        out.append(flat[start : start + len(row["candidates"])])
        start += len(row["candidates"])
    return out


def dropout_on(model: torch.nn.Module, rate: float) -> int:
    """Switch dropout on for scoring (train mode, no gradients); give `rate` to layers that have none.

    Returns how many dropout places the model has: 0 means the passes would all agree.
    """
    model.train()
    places = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            if module.p == 0:
                module.p = rate
            places += 1
        # Llama-style attention applies dropout functionally from this attribute in train mode.
        elif isinstance(getattr(module, "attention_dropout", None), float):
            if module.attention_dropout == 0:
                module.attention_dropout = rate
            places += 1
    return places


def uncertainty_score(
    rows: list[dict], *, versions: list[ModelVersion], signal: str = "gap", passes: int = 8,
    dropout_rate: float = 0.1, batch_size: int = 32, deadline: float | None = None,
) -> dict[int, dict]:
    """Return, per item of `rows` (from annotate's candidate_sets_open), its uncertainty and detail.

    Stops at `deadline` (time.monotonic()); items not reached are left out.
    """
    if signal not in SIGNALS:
        raise ValueError(f"unknown uncertainty signal {signal!r}; use one of {', '.join(SIGNALS)}")
    if not versions or not rows:
        return {}
    if signal == "versions" and len(versions) < 2:
        signal = "gap"
    scorer = _scorer(versions[0], batch_size=batch_size)
    previous = _scorer(versions[1], batch_size=batch_size) if signal == "versions" else None
    places = dropout_on(scorer.model, dropout_rate) if signal == "dropout" else None
    out = {}
    for start in range(0, len(rows), CHUNK):
        if deadline is not None and time.monotonic() > deadline:
            break
        chunk = rows[start : start + CHUNK]
        chats = _chats(chunk)
        if signal == "dropout":
            runs = [_per_set(chunk, scorer(chats)) for _ in range(passes)]
            per_set = [[run[index] for run in runs] for index in range(len(chunk))]
        else:
            per_set = _per_set(chunk, scorer(chats))
        second = _per_set(chunk, previous(chats)) if previous is not None else None
        for index, row in enumerate(chunk):
            if signal == "dropout":
                sampled = per_set[index]
                mean = [sum(s[i] for s in sampled) / len(sampled) for i in range(len(sampled[0]))]
                value, detail = passes_uncertainty(sampled), {"passes": passes, "dropout_places": places}
                scores = mean
            else:
                scores = per_set[index]
                if signal == "versions":
                    value, detail = discordance(scores, second[index]), {"versus": versions[1].name}
                else:
                    value, detail = gap_uncertainty(scores), {}
            ordered = sorted(scores, reverse=True)
            out[row["item_id"]] = {
                "uncertainty": round(min(1.0, max(0.0, value)), 4),
                "uncertainty_signal": signal,
                "reward_model": versions[0].name,
                "smallest_gap": round(min((a - b for a, b in zip(ordered, ordered[1:])), default=0.0), 4),
                "reward_scores": {str(c["id"]): round(s, 4) for c, s in zip(row["candidates"], scores)},
                **detail,
            }
    return out


def version_coverage(project: Project, rows: list[dict]) -> dict[int, float]:
    """Return, per item of `rows` with model-written replies, how little their versions have been judged."""
    judged = work_selectors.judgements_per_set(project=project)
    sets = list(CandidateSet.objects.filter(project=project).values_list("id", "message_ids"))
    message_ids = {message_id for _, ids in sets for message_id in ids}
    version_of = dict(
        GeneratedReply.objects.filter(message_id__in=message_ids).values_list("message_id", "model_version_id")
    )
    if not version_of:
        return {}
    per_version: dict[int, int] = {}
    for set_id, ids in sets:
        for version in {version_of[i] for i in ids if i in version_of}:
            per_version[version] = per_version.get(version, 0) + judged.get(set_id, 0)
    most = max(per_version.values()) or 1
    out = {}
    for row in rows:
        versions = {version_of[c["id"]] for c in row["candidates"] if c["id"] in version_of}
        if versions:
            out[row["item_id"]] = round(sum(1 - per_version.get(v, 0) / most for v in versions) / len(versions), 4)
    return out


def priorities_refresh(
    *, project: Project, signal: str = "gap", seconds: float = 600.0, passes: int = 8, batch_size: int = 32,
    reward_version: ModelVersion | None = None,
) -> dict:
    """Score the project's open sets with its reward model, store the signals, and recompute priorities.

    Call after each round (a new reward model) and after each generation (new candidate sets).
    Within `seconds` in all: scoring stops at the cap and the recompute gets at least a little time.
    Without a reward model, only coverage is measured.
    """
    started = time.monotonic()
    rows = work_selectors.candidate_sets_open(project=project)
    versions = reward_versions(project)
    if reward_version is not None:
        versions = [reward_version] + [v for v in versions if v.pk != reward_version.pk]
    deadline = started + seconds * 0.8
    signals = uncertainty_score(rows, versions=versions, signal=signal, passes=passes, batch_size=batch_size,
                                deadline=deadline)
    for item_id, value in version_coverage(project, rows).items():
        signals.setdefault(item_id, {})["version_coverage"] = value
    written = priority_services.priority_signals_write(project=project, signals=signals)
    recomputed = priority_services.priorities_recompute(
        project=project, seconds=max(1.0, seconds - (time.monotonic() - started))
    )
    return {
        "open_sets": len(rows),
        "scored": sum(1 for s in signals.values() if "uncertainty" in s),
        "signal": signal,
        "reward_model": versions[0].name if versions else None,
        "written": written,
        "recompute": recomputed,
        "seconds": round(time.monotonic() - started, 3),
    }
