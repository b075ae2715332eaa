"""Preference pairs: chosen/rejected as message lists (TRL's preference format, with or without
an explicit `prompt`), or as Anthropic HH text ("\\n\\nHuman: ... \\n\\nAssistant: ...").

Each pair becomes the shared conversation, two sibling replies, and one imported comparison
(chosen above rejected) by a pseudonymous identity for the file's source.
"""

import re

from annotate.importers.base import ImportRefused, jsonl_records
from annotate.importers.chats import turns_from_list
from annotate.models import MessageRole

HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def hh_turns(text: str, line: int, field: str) -> list[tuple[str, str]]:
    """Split an HH transcript into (role, text) turns."""
    parts = HH_TURN.split(text)
    if parts[0].strip():
        raise ImportRefused(line, f"'{field}' must start with '\\n\\nHuman:'")
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = MessageRole.USER if speaker == "Human" else MessageRole.ASSISTANT
        if turns and turns[-1][0] == role:
            raise ImportRefused(line, f"'{field}' has two {speaker} turns in a row")
        turns.append((role, content.strip()))
    if not turns:
        raise ImportRefused(line, f"'{field}' has no Human/Assistant turns")
    return turns


def split_pair(chosen, rejected, line: int):
    """Return (prompt turns, chosen reply, rejected reply) from two whole conversations."""
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1][0] != MessageRole.ASSISTANT:
            raise ImportRefused(line, f"'{name}' must end with an assistant reply")
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0 or len(chosen) != shared + 1 or len(rejected) != shared + 1:
        raise ImportRefused(line, f"chosen and rejected do not share their prompt (they differ at turn {shared + 1})")
    return chosen[:shared], chosen[-1][1], rejected[-1][1]


def read_pairs(stream, writer) -> None:
    annotator = f"pairs:{writer.batch.sha256[:12]}"
    for line, record in jsonl_records(stream):
        for field in ("chosen", "rejected"):
            if field not in record:
                raise ImportRefused(line, f"no '{field}' field")
        chosen, rejected = record["chosen"], record["rejected"]
        if isinstance(chosen, str) and isinstance(rejected, str):
            if "prompt" in record:
                prompt = _prompt_turns(record["prompt"], line)
                chosen_text, rejected_text = chosen, rejected
            else:
                prompt, chosen_text, rejected_text = split_pair(
                    hh_turns(chosen, line, "chosen"), hh_turns(rejected, line, "rejected"), line
                )
        elif isinstance(chosen, list) and isinstance(rejected, list):
            chosen_turns = turns_from_list(chosen, line, field="chosen")
            rejected_turns = turns_from_list(rejected, line, field="rejected")
            if "prompt" in record:
                prompt = _prompt_turns(record["prompt"], line)
                if len(chosen_turns) != 1 or len(rejected_turns) != 1:
                    raise ImportRefused(line, "with an explicit prompt, chosen and rejected hold one reply each")
                chosen_turns, rejected_turns = prompt + chosen_turns, prompt + rejected_turns
            prompt, chosen_text, rejected_text = split_pair(chosen_turns, rejected_turns, line)
        else:
            raise ImportRefused(line, "'chosen' and 'rejected' must both be strings or both be message lists")
        if chosen_text.strip() == rejected_text.strip():
            raise ImportRefused(line, "chosen and rejected are the same reply")
        if not chosen_text.strip() or not rejected_text.strip():
            raise ImportRefused(line, "a reply is empty")
        if prompt[-1][0] != MessageRole.USER:
            raise ImportRefused(line, "the prompt must end with a user turn")
        parent = writer.path(prompt, line=line)
        better = writer.turn(parent=parent, role=MessageRole.ASSISTANT, text=chosen_text, line=line)
        worse = writer.turn(parent=parent, role=MessageRole.ASSISTANT, text=rejected_text, line=line)
        writer.ranking(parent=parent, tiers=[[better], [worse]], annotator=annotator, line=line)


def _prompt_turns(prompt, line: int) -> list[tuple[str, str]]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ImportRefused(line, "'prompt' is empty")
        return [(MessageRole.USER, prompt)]
    return turns_from_list(prompt, line, field="prompt")
