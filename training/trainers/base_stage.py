"""Stage 0: the base model, built from scratch on the project's text or adopted from a directory.

From scratch: a BPE tokenizer trained on the pretraining text (and any `texts_for_tokenizer`),
a GPT-2-shaped model from the configured shape, pretrained as a causal LM with TRL's SFTTrainer
on text rows, packed into full blocks ("wrapped" packing with padded attention: the padding-free
path needs flash-attn, and without it was 3.6x slower), or with `packing: false` one padded row
per document.

Adopting: a local Hugging Face model directory is loaded and kept as it is, chat template included
(an instruct model answers in the format it was tuned on; SFT masks prompts without {% generation %}
markers, see sft.py). Only what later stages cannot do without is repaired: an EOS token, and a pad
token distinct from EOS where it has none or shares EOS (SmolLM2's pad is its EOS, <|im_end|>) —
preferably a special token it has and nothing uses, so that no embedding row is added. Our chat
template only where it has none. It is not trained further, and is saved in the dtype it came in.
"""

import itertools
import shutil

from transformers import AutoModelForCausalLM, AutoTokenizer

from . import evaluate
from .scratch import ASSISTANT, PAD, USER, chat_template, gpt_from_config, tokenizer_train
from .common import Job, ProgressCallback, publish, start_work, training_arguments
from .data import stage_rows, texts_of
from .progress import process_rank

INIT = "init"


def train(job: Job) -> None:
    if job.base_model:
        adopt(job)
    else:
        from_scratch(job)


def from_scratch(job: Job) -> None:
    # Imported here: adopting trains nothing, and TRL with datasets is most of a child's start-up (about 2.5 s
    # of CPU of its 5).
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    c = job.config
    args = training_arguments(
        job, SFTConfig, max_length=c["max_length"], packing=c["packing"], packing_strategy="wrapped",
        padding_free=False, dataset_text_field="text",
    )
    main = args.process_index == 0
    rows = stage_rows("base", job.train_path)
    init = job.work_dir / INIT
    # The tokenizer is trained once, by the main process, and kept in work_dir: a resumed run
    # must rebuild exactly the model its checkpoints were saved from.
    checkpoint = start_work(job, args)
    with args.main_process_first(desc="base tokenizer"):
        if main and not (job.resume and (init / "tokenizer.json").exists()):
            shutil.rmtree(init, ignore_errors=True)
            texts = itertools.chain((r["text"] for r in rows), *(texts_of(p) for p in job.texts_for_tokenizer))
            tokenizer_train(texts, vocab_size=c["vocab_size"]).save_pretrained(init)
    tokenizer = AutoTokenizer.from_pretrained(init)
    model = gpt_from_config(tokenizer, layers=c["layers"], heads=c["heads"], width=c["width"],
                            context=c["context"], attn_implementation=c["attn_implementation"])
    callback = ProgressCallback(job, start_fields={"parameters": sum(p.numel() for p in model.parameters())})
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[callback])
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=trainer.save_model,
            evaluate=lambda folder: evaluate.evaluate_base(str(folder), job.eval_path, c),
            train_metrics={**callback.summary, "vocab_size": len(tokenizer),
                           "parameters": sum(p.numel() for p in model.parameters())})


def unused_special_token(tokenizer, *, rows: int) -> str | None:
    """Return a special token of the tokenizer that nothing uses and the weights have a row for, or None.

    Not BOS, EOS or UNK, not written by the chat template: SmolLM2 has <repo_name>, <file_sep> and more from its
    code pretraining. One named for padding goes first (Qwen's <|fim_pad|>, Llama 3's <|finetune_right_pad_id|>),
    else the lowest id.
    """
    template = tokenizer.chat_template or ""
    taken = {tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token}
    unused = [token.content for token_id, token in sorted(tokenizer.added_tokens_decoder.items())
              if token.special and token_id < rows and token.content not in taken and token.content not in template]
    return next((t for t in unused if "pad" in t.lower()), unused[0] if unused else None)


def adopt(job: Job) -> None:
    """Take a local model as the base: give it the EOS and pad tokens later stages need, keep the rest."""
    if process_rank() != 0:  # nothing to train: the other processes of a launch have nothing to do
        return
    job.progress.start(stage=job.stage, total=0, step=0, world_size=1, ranks=[0], adopted=job.base_model)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    model = AutoModelForCausalLM.from_pretrained(job.base_model)  # in the dtype it was saved in, and saved so again
    rows = model.get_input_embeddings().num_embeddings
    repaired = {}
    if tokenizer.eos_token is None:
        tokenizer.add_special_tokens({"eos_token": "<|end|>"})
        repaired["eos_token_added"] = 1
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # TRL's PPO cuts replies at EOS and finds where they end by the pad token: the two must differ.
        unused = unused_special_token(tokenizer, rows=rows)
        if unused:
            tokenizer.pad_token = unused
            repaired["pad_token_reused"] = 1
        else:
            tokenizer.add_special_tokens({"pad_token": PAD})
            repaired["pad_token_added"] = 1
        repaired["pad_token_id"] = tokenizer.pad_token_id
    if not tokenizer.chat_template:  # the fence refuses such a directory; adopt() called by hand still needs one
        tokenizer.add_special_tokens({"additional_special_tokens": [USER, ASSISTANT]})
        tokenizer.chat_template = chat_template(eos=tokenizer.eos_token)
        repaired["chat_template_set"] = 1
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer))
        repaired["embedding_rows_added"] = len(tokenizer) - rows
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id

    def save(folder):
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    publish(job, main=True, wait=lambda: None, save=save,
            evaluate=lambda folder: evaluate.evaluate_base(str(folder), job.eval_path, job.config),
            train_metrics={**repaired, "vocab_size": len(tokenizer),
                           "parameters": sum(p.numel() for p in model.parameters())})
