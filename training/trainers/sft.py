"""Stage 1: supervised fine-tuning on demonstrations with TRL's SFTTrainer, loss on assistant tokens only.

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
from .data import stage_rows


def train(job: Job) -> None:
    c = job.config
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    # assistant_only_loss masks every token outside the chat template's {% generation %} blocks.
    args = training_arguments(job, SFTConfig, max_length=c["max_length"], assistant_only_loss=True, packing=False,
                              **padded_batch_arguments(job, vocab_size=len(tokenizer), group_by_length=True))
    main = args.process_index == 0
    checkpoint = start_work(job, args)
    model = AutoModelForCausalLM.from_pretrained(job.base_model, attn_implementation=c["attn_implementation"])
    lora = adapter_config(job, model, tokenizer)
    callback = ProgressCallback(job, start_fields={"adapter": job.adapter})
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(stage_rows("sft", job.train_path)),
                         processing_class=tokenizer, callbacks=[callback], peft_config=lora)
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForCausalLM),
            evaluate=lambda folder: evaluate.evaluate_sft(str(folder), job.eval_path, c, seed=job.seed),
            train_metrics=callback.summary)
