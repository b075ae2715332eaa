"""Stage 1: supervised fine-tuning on demonstrations with TRL's SFTTrainer, loss on assistant tokens only.

How the prompt is kept out of the loss depends on the chat template (config.has_generation_markers):
- with {% generation %} markers (ours from scratch): TRL's assistant_only_loss, which trains every assistant
  turn the template marks;
- without (an adopted model's own template, as SmolLM2's ChatML): each chat becomes TRL's conversational
  prompt-completion row, the turns before its last assistant turn as the prompt and that turn as the
  completion, and TRL's completion_only_loss trains the tokens the completion adds to the prompt rendered
  with its generation prompt (the reply and its end-of-turn token). TRL 1.12's assistant_only_loss would
  swap in a marked copy of a few templates it knows and refuse every other one.
evaluate.evaluate_sft scores held-out chats on the same tokens (loss_mask).

All weights, or a LoRA adapter (the `adapter` setting; see adapters.py for what is saved then)."""

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from . import evaluate
from .common import (
    Job,
    ProgressCallback,
    adapter_config,
    padded_batch_arguments,
    publish,
    save_for,
    start_work,
    training_arguments,
)
from .config import has_generation_markers
from .data import stage_rows


def last_reply(messages: list[dict]) -> int:
    """Return the index of the chat's last assistant turn; ValueError when it has none."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise ValueError("a demonstration has no assistant turn to train on")
    return last


def prompt_completion(tokenizer, rows: list[dict]) -> list[dict]:
    """Return the chats as TRL's conversational prompt-completion rows, checking the template can mask them.

    The mask is the tokens the whole chat has beyond its prompt rendered with the generation prompt, so that
    rendering must start the whole chat's: a template that renders earlier turns differently once a reply
    follows (one that drops past reasoning) would move the mask into the prompt.
    """
    converted = []
    for number, row in enumerate(rows, 1):
        last = last_reply(row["messages"])
        prompt, completion = row["messages"][:last], row["messages"][last:last + 1]
        asked = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if not tokenizer.apply_chat_template(prompt + completion, tokenize=False).startswith(asked):
            raise ValueError(f"row {number}: the chat template renders the prompt with its generation prompt "
                             "differently from the start of the whole chat, so the prompt cannot be masked; give "
                             "the model a template with {% generation %} markers")
        converted.append({"prompt": prompt, "completion": completion})
    return converted


def loss_mask(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Return a chat's token ids and which of them SFT trains on, as the trainer set up in train() masks them."""
    if has_generation_markers(tokenizer.chat_template):
        encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
        return list(encoded["input_ids"]), list(encoded["assistant_masks"])
    last = last_reply(messages)
    prompt = tokenizer.apply_chat_template(messages[:last], tokenize=True, add_generation_prompt=True,
                                           return_dict=True)["input_ids"]
    ids = list(tokenizer.apply_chat_template(messages[:last + 1], tokenize=True, return_dict=True)["input_ids"])
    return ids, [0] * len(prompt) + [1] * (len(ids) - len(prompt))


def trainer_for(job: Job) -> SFTTrainer:
    """Return the SFTTrainer the stage trains with, its dataset tokenized and masked (TRL does it at init)."""
    c = job.config
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    rows = stage_rows("sft", job.train_path)
    marked = has_generation_markers(tokenizer.chat_template)
    if not marked:
        rows = prompt_completion(tokenizer, rows)
    args = training_arguments(job, SFTConfig, max_length=c["max_length"], assistant_only_loss=marked,
                              completion_only_loss=not marked, packing=False,
                              **padded_batch_arguments(job, vocab_size=len(tokenizer), group_by_length=True))
    model = AutoModelForCausalLM.from_pretrained(job.base_model, attn_implementation=c["attn_implementation"],
                                                 dtype=job.load_dtype)
    lora = adapter_config(job, model, tokenizer)
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                      peft_config=lora)


def train(job: Job) -> None:
    c = job.config
    trainer = trainer_for(job)
    main = trainer.args.process_index == 0
    checkpoint = start_work(job, trainer.args)
    callback = ProgressCallback(job, start_fields={"adapter": job.adapter})
    trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForCausalLM),
            evaluate=lambda folder: evaluate.evaluate_sft(str(folder), job.eval_path, c, seed=job.seed),
            train_metrics={**callback.summary,
                           "generation_markers": int(has_generation_markers(trainer.processing_class.chat_template))})
