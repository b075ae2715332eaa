"""Build a base model from nothing: a BPE tokenizer trained on the project's own text, with chat
special tokens and a chat template that marks assistant turns, and a small GPT from a config.

No Django, no hub: runs in a worker, under `accelerate launch`, or by hand.
"""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

PAD, EOS, UNK, USER, ASSISTANT = "<|pad|>", "<|end|>", "<|unk|>", "<|user|>", "<|assistant|>"


def chat_template(*, eos: str = EOS, user: str = USER, assistant: str = ASSISTANT) -> str:
    """Return a chat template that ends every turn with `eos` and marks assistant turns.

    Assistant turns sit inside {% generation %} so TRL's assistant_only_loss can mask the rest.
    A system message is written like a user turn: these small models know no system role.
    """
    return (
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}" + assistant + "{% generation %}{{ message['content'] }}" + eos
        + "{% endgeneration %}"
        "{% else %}" + user + "{{ message['content'] }}" + eos + "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}" + assistant + "{% endif %}"
    )


# The pad token differs from EOS, as TRL's PPO requires.
CHAT_TEMPLATE = chat_template()


def tokenizer_train(texts: Iterable[str], *, vocab_size: int = 8192) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts`; every byte stays representable."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, UNK, USER, ASSISTANT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def gpt_from_config(tokenizer, *, layers: int = 4, heads: int = 4, width: int = 256, context: int = 512,
                    attn_implementation: str | None = None) -> GPT2LMHeadModel:
    """Return a GPT-2-shaped model with fresh weights, sized to `tokenizer` and the given shape."""
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=context,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if attn_implementation:
        config._attn_implementation = attn_implementation
    return GPT2LMHeadModel(config)
