"""What every generation backend shares: the sampling settings, the interface, and the checks on a
conversation before it is sent anywhere.

No Django here: a generation job, a chat view, a bench script and a test all call this the same way.
"""

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

ROLES = ("system", "user", "assistant")


class GenerationError(RuntimeError):
    """A backend could not produce replies: a model that does not load, a server that is down or
    answers something that is not a chat completion. The message says which model or URL."""


@dataclass(frozen=True)
class SamplingSettings:
    """How replies are sampled; recorded on every reply with `as_dict()`.

    temperature 0 means greedy decoding (top_p and seed then make no difference). seed None means
    unseeded: replies differ from call to call.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int | None = 0

    def __post_init__(self):
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float) or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, not {self.temperature!r}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be a number in (0, 1], not {self.top_p!r}")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, not {self.max_new_tokens!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be an integer >= 0 or None, not {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict:
        """Return the settings as plain JSON values, to store with each generated reply."""
        return asdict(self)


@runtime_checkable
class GenerationBackend(Protocol):
    """Where replies come from: a local model directory or an OpenAI-compatible server.

    A conversation is a list of {"role": "system" | "user" | "assistant", "content": str} messages
    ending with a user turn; a reply is the assistant's next message as plain text.
    """

    def generate(self, conversations: list[list[dict]], *, n: int,
                 settings: SamplingSettings) -> list[list[str]]:
        """Return `n` sampled replies for each conversation, in the order given.

        Batched internally; the same conversations, n and settings (with a seed) give the same replies.
        """
        ...

    def stream(self, conversation: list[dict], *, settings: SamplingSettings) -> Iterator[str]:
        """Yield one reply to `conversation` in text chunks as it is generated.

        Closing the iterator early (a chat page that went away) stops generation.
        """
        ...

    def describe(self) -> dict:
        """Return what to record about where replies came from: {"backend": ..., "model": ..., ...}."""
        ...


def conversation_problems(conversation) -> list[str]:
    """Return why `conversation` cannot be sent to a model; empty when it can."""
    if not isinstance(conversation, list) or not conversation:
        return ["a conversation must be a non-empty list of messages"]
    problems = []
    for i, message in enumerate(conversation):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            problems.append(f"message {i} must be a dict with role in {ROLES} and text content, not {message!r:.80}")
    if not problems and conversation[-1]["role"] != "user":
        problems.append(f"the last message must be a user turn, not {conversation[-1]['role']!r}")
    return problems


def check_conversations(conversations, *, n: int) -> None:
    """Raise ValueError naming the first bad conversation, or a bad `n`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, not {n!r}")
    if not isinstance(conversations, list):
        raise ValueError(f"conversations must be a list of conversations, not {type(conversations).__name__}")
    for index, conversation in enumerate(conversations):
        if problems := conversation_problems(conversation):
            raise ValueError(f"conversation {index}: {'; '.join(problems)}")
