"""Stage 0: the base model, built from scratch on the project's text or adopted from a directory.

From scratch: a BPE tokenizer trained on the pretraining text (and any `texts_for_tokenizer`),
a GPT-2-shaped model from the configured shape, pretrained as a causal LM with TRL's SFTTrainer
on text rows, packed into full blocks ("wrapped" packing with padded attention: the padding-free
path needs flash-attn, and without it was 3.6x slower), or with `packing: false` one padded row
per document.

Adopting: a local Hugging Face model directory is loaded, given a pad token distinct from EOS
when it has none or shares EOS, and a chat template with {% generation %} markers when it has
none; it is not trained further.
"""

import itertools
import shutil

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

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


def adopt(job: Job) -> None:
    """Take a local model as the base: repair its pad token and chat template where needed."""
    if process_rank() != 0:  # nothing to train: the other processes of a launch have nothing to do
        return
    job.progress.start(stage=job.stage, total=0, step=0, world_size=1, ranks=[0], adopted=job.base_model)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    model = AutoModelForCausalLM.from_pretrained(job.base_model)
    repaired = {}
    if tokenizer.eos_token is None:
        tokenizer.add_special_tokens({"eos_token": "<|end|>"})
        repaired["eos_token_added"] = 1
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # TRL's PPO cuts replies at EOS and finds where they end by the pad token: the two must differ.
        tokenizer.add_special_tokens({"pad_token": PAD})
        repaired["pad_token_added"] = 1
    template = tokenizer.chat_template
    if not template or "generation" not in template:
        # Without {% generation %} markers SFT cannot limit its loss to assistant tokens.
        tokenizer.add_special_tokens({"additional_special_tokens": [USER, ASSISTANT]})
        tokenizer.chat_template = chat_template(eos=tokenizer.eos_token)
        repaired["chat_template_set"] = 1
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
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
