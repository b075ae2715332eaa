"""Stage 1: supervised fine-tuning on demonstrations with TRL's SFTTrainer, loss on assistant tokens only."""

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from . import evaluate
from .common import Job, ProgressCallback, padded_batch_arguments, publish, start_work, training_arguments
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
    callback = ProgressCallback(job)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(stage_rows("sft", job.train_path)),
                         processing_class=tokenizer, callbacks=[callback])
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone, save=trainer.save_model,
            evaluate=lambda folder: evaluate.evaluate_sft(str(folder), job.eval_path, c, seed=job.seed),
            train_metrics=callback.summary)
