"""Multi-turn chats: `messages` of {role, content}, or ShareGPT `conversations` of {from, value}."""

from annotate.importers.base import ImportRefused, jsonl_records
from annotate.models import MessageRole

MESSAGE_ROLES = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT}
SHAREGPT_ROLES = {"human": MessageRole.USER, "user": MessageRole.USER, "gpt": MessageRole.ASSISTANT,
                  "assistant": MessageRole.ASSISTANT, "chatgpt": MessageRole.ASSISTANT}


def turns_from_list(items, line: int, *, field: str, role_key="role", text_key="content", roles=MESSAGE_ROLES):
    """Check a list of chat messages and return it as (role, text) pairs. System messages are
    left out: the tree holds user and assistant turns only."""
    if not isinstance(items, list) or not items:
        raise ImportRefused(line, f"'{field}' must be a non-empty list")
    turns = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ImportRefused(line, f"{field}[{index}] must be an object with {role_key} and {text_key}")
        speaker, text = item.get(role_key), item.get(text_key)
        if speaker == "system":
            continue
        if speaker not in roles:
            raise ImportRefused(
                line, f"{field}[{index}] has {role_key} {speaker!r}; use {', '.join(roles)} or system"
            )
        if not isinstance(text, str) or not text.strip():
            raise ImportRefused(line, f"{field}[{index}] has no text {text_key}")
        turns.append((roles[speaker], text))
    if not turns:
        raise ImportRefused(line, f"'{field}' holds only system messages")
    return turns


def read_messages(stream, writer) -> None:
    for line, record in jsonl_records(stream):
        if "messages" not in record:
            raise ImportRefused(line, "no 'messages' field")
        writer.path(turns_from_list(record["messages"], line, field="messages"), line=line)


def read_sharegpt(stream, writer) -> None:
    for line, record in jsonl_records(stream):
        if "conversations" not in record:
            raise ImportRefused(line, "no 'conversations' field")
        turns = turns_from_list(
            record["conversations"], line, field="conversations", role_key="from", text_key="value", roles=SHAREGPT_ROLES
        )
        writer.path(turns, line=line)
