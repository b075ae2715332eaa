"""Multi-turn chats, one a line, in either form on any line (concatenated datasets mix them): `messages`
of {role, content}, or ShareGPT `conversations` of {from, value}.

The tree's turns are user and assistant only, so a system message is kept as metadata of the turn
after it (`system`; the root, for the usual opening one), where SFT exports put it back; one that
ends a chat is kept on its last turn as `system_after`.
"""

from annotate.importers.base import ImportRefused, jsonl_records
from annotate.models import MessageRole

SYSTEM = "system"
# Both forms' speakers: a `messages` line written with ShareGPT's names (or the reverse) is still plain.
ROLES = {"user": MessageRole.USER, "human": MessageRole.USER, "assistant": MessageRole.ASSISTANT,
         "gpt": MessageRole.ASSISTANT, "chatgpt": MessageRole.ASSISTANT}
FIELDS = ("messages", "conversations")


def turns_from_list(items, line: int, *, field: str) -> list[tuple]:
    """Check a list of chat messages, each {role, content} or {from, value}, and return it as (role, text)
    turns, or (role, text, metadata) for a turn that keeps a system message."""
    if not isinstance(items, list) or not items:
        raise ImportRefused(line, f"'{field}' must be a non-empty list")
    turns, system = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ImportRefused(line, f"{field}[{index}] must be an object with role and content (or from and value)")
        role_key, text_key = ("from", "value") if "from" in item else ("role", "content")
        speaker, text = item.get(role_key), item.get(text_key)
        if speaker != SYSTEM and speaker not in ROLES:
            raise ImportRefused(line, f"{field}[{index}] has {role_key} {speaker!r}; use {', '.join(ROLES)} or system")
        if not isinstance(text, str) or not text.strip():
            if speaker == SYSTEM:
                continue  # an empty system prompt says nothing worth keeping
            raise ImportRefused(line, f"{field}[{index}] has no text {text_key}")
        if speaker == SYSTEM:
            system.append(text)
            continue
        if system:
            turns.append((ROLES[speaker], text, {"system": "\n\n".join(system)}))
            system = []
        else:
            turns.append((ROLES[speaker], text))
    if not turns:
        raise ImportRefused(line, f"'{field}' holds only system messages")
    if system:
        role, text, *metadata = turns[-1]
        turns[-1] = (role, text, {**(metadata[0] if metadata else {}), "system_after": "\n\n".join(system)})
    return turns


def read_chats(stream, writer) -> None:
    """Write each line's chat, in whichever form the line has."""
    for line, record in jsonl_records(stream):
        field = next((name for name in FIELDS if name in record), None)
        if field is None:
            raise ImportRefused(line, "no 'messages' or 'conversations' field")
        writer.path(turns_from_list(record[field], line, field=field), line=line)
