"""Multi-turn chats: `messages` of {role, content}, or ShareGPT `conversations` of {from, value}."""

from annotate.importers.base import ImportRefused, jsonl_records
from annotate.models import MessageRole

SHAREGPT_ROLES = {"human": MessageRole.USER, "user": MessageRole.USER, "gpt": MessageRole.ASSISTANT,
                  "assistant": MessageRole.ASSISTANT, "chatgpt": MessageRole.ASSISTANT}


def turns_from_messages(messages, line: int, *, field: str = "messages") -> list[tuple[str, str]]:
    """Check a `messages` list and return it as (role, text) pairs; a system message is dropped
    from the turns (the tree has user and assistant turns only) and returned separately."""
    if not isinstance(messages, list) or not messages:
        raise ImportRefused(line, f"'{field}' must be a non-empty list")
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ImportRefused(line, f"{field}[{index}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role == "system":
            continue
        if role not in (MessageRole.USER, MessageRole.ASSISTANT):
            raise ImportRefused(line, f"{field}[{index}] has role {role!r}; use user, assistant or system")
        if not isinstance(content, str) or not content.strip():
            raise ImportRefused(line, f"{field}[{index}] has no text content")
        turns.append((role, content))
    if not turns:
        raise ImportRefused(line, f"'{field}' holds only system messages")
    return turns


def read_messages(stream, writer) -> None:
    for line, record in jsonl_records(stream):
        if "messages" not in record:
            raise ImportRefused(line, "no 'messages' field")
        writer.path(turns_from_messages(record["messages"], line), line=line)


def read_sharegpt(stream, writer) -> None:
    for line, record in jsonl_records(stream):
        conversation = record.get("conversations")
        if not isinstance(conversation, list) or not conversation:
            raise ImportRefused(line, "'conversations' must be a non-empty list")
        turns = []
        for index, message in enumerate(conversation):
            if not isinstance(message, dict):
                raise ImportRefused(line, f"conversations[{index}] must be an object with from and value")
            speaker, value = message.get("from"), message.get("value")
            if speaker == "system":
                continue
            if speaker not in SHAREGPT_ROLES:
                raise ImportRefused(line, f"conversations[{index}] is from {speaker!r}; use human, gpt or system")
            if not isinstance(value, str) or not value.strip():
                raise ImportRefused(line, f"conversations[{index}] has no text value")
            turns.append((SHAREGPT_ROLES[speaker], value))
        writer.path(turns, line=line)
