"""Stage 2: the reward model, trained on preference pairs with TRL's RewardTrainer.

A sequence classifier with one label, started from the SFT model and sharing its tokenizer
(PPO hands the reward model the policy's token ids). Its `config.pad_token_id` is the
tokenizer's pad: the head reads the score at the last token that is not padding. With a LoRA
adapter the score head, new and trained whole, is saved with it (peft's modules_to_save). All its
weights are saved in float32 even from a bf16 SFT model: PPO's value model starts from them and
trains all of them.
"""

from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

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
    # No grouping by length: TRL's sampler reads an `input_ids` column, and a pair's rows are `chosen_ids`
    # and `rejected_ids`.
    args = training_arguments(job, RewardConfig, max_length=c["max_length"], **padded_batch_arguments(job))
    main = args.process_index == 0
    checkpoint = start_work(job, args)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        job.base_model, num_labels=1, attn_implementation=c["attn_implementation"], dtype=job.load_dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    lora = adapter_config(job, model, tokenizer, task_type="SEQ_CLS", modules_to_save=["score"])
    callback = ProgressCallback(job, start_fields={"adapter": job.adapter})
    trainer = RewardTrainer(model=model, args=args,
                            train_dataset=Dataset.from_list(stage_rows("reward", job.train_path)),
                            processing_class=tokenizer, callbacks=[callback], peft_config=lora)
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForSequenceClassification, float32=True, num_labels=1),
            evaluate=lambda folder: evaluate.evaluate_reward(str(folder), job.eval_path, c),
            train_metrics=callback.summary)
