"""The screen classifier stage: is a message harmful (toxic, spam or off task), learnt from the flags annotators set.

A sequence classifier with two labels (0 clean, 1 harmful), started from the project's base model and sharing its
tokenizer, trained on the flags snapshot (`text`, `label`): the messages annotators flagged and those they labelled
without a flag. Trained by transformers' Trainer: TRL has no trainer for plain classification (its RewardTrainer
scores pairs). As the reward model, the head reads the last token that is not padding (`config.pad_token_id`), and
with a LoRA adapter the new head trains whole (peft's modules_to_save). Saved in float32.

`HarmScorer` scores texts with a registered version: the evaluation here, and the content screen where an admin
chose the version as the project's screen (training.screen_provider).
"""

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from . import adapters
from .common import Job, ProgressCallback, adapter_config, publish, save_for, start_work, training_arguments
from .data import stage_rows

LABELS = 2


class HarmScorer:
    """The probability that each text is harmful, by a screen classifier's folder (right padding, batches)."""

    def __init__(self, model_dir: str, *, max_length: int = 256, batch_size: int = 32):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = adapters.pretrained(AutoModelForSequenceClassification, model_dir, num_labels=LABELS)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(device).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = min(max_length, getattr(self.model.config, "max_position_embeddings", max_length))
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> list[float]:
        device = next(self.model.parameters()).device
        scores = []
        for start in range(0, len(texts), self.batch_size):
            chunk = self.tokenizer(texts[start:start + self.batch_size], truncation=True, max_length=self.max_length,
                                   padding=True, return_tensors="pt")
            logits = self.model(input_ids=chunk["input_ids"].to(device),
                                attention_mask=chunk["attention_mask"].to(device)).logits.float()
            scores += torch.softmax(logits, dim=-1)[:, 1].tolist()
        return scores


def measured(labels: list[bool], scores: list[float], threshold: float) -> dict:
    """Precision, recall and F1 of `scores` above `threshold` against `labels`, and the average precision
    (the mean of the precision at each harmful text's rank, scores high to low)."""
    said = [score > threshold for score in scores]
    found = sum(s and label for s, label in zip(said, labels))
    precision = found / sum(said) if any(said) else 0.0
    harmful = sum(labels)
    recall = found / harmful if harmful else 0.0
    ranked = sorted(zip(scores, labels), key=lambda pair: -pair[0])
    hits, precisions = 0, []
    for rank, (_, label) in enumerate(ranked, 1):
        if label:
            hits += 1
            precisions.append(hits / rank)
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "average_precision": sum(precisions) / harmful if harmful else 0.0}


def evaluate(model_dir: str, eval_path: str | None, config: dict) -> dict:
    if not eval_path:
        return {"eval_rows": 0}
    rows = stage_rows("screen", eval_path, limit=config["eval_max_rows"])
    if not rows:
        return {"eval_rows": 0}
    score = HarmScorer(model_dir, max_length=config["max_length"], batch_size=config["per_device_eval_batch_size"])
    labels = [row["label"] for row in rows]
    found = measured(labels, score([row["text"] for row in rows]), config["eval_threshold"])
    return {"eval_rows": len(rows), "eval_harmful": sum(labels), "eval_threshold": config["eval_threshold"],
            **{f"eval_{name}": value for name, value in found.items()}}


def train(job: Job) -> None:
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    c = job.config
    args = training_arguments(job, TrainingArguments, remove_unused_columns=True)
    main = args.process_index == 0
    checkpoint = start_work(job, args)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        job.base_model, num_labels=LABELS, attn_implementation=c["attn_implementation"], dtype=job.load_dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.id2label, model.config.label2id = {0: "clean", 1: "harmful"}, {"clean": 0, "harmful": 1}
    lora = adapter_config(job, model, tokenizer, task_type="SEQ_CLS", modules_to_save=["score"])
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    rows = stage_rows("screen", job.train_path)
    encoded = tokenizer([row["text"] for row in rows], truncation=True, max_length=c["max_length"])
    dataset = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                                 "labels": [int(row["label"]) for row in rows]})
    callback = ProgressCallback(job, start_fields={"adapter": job.adapter})
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, callbacks=[callback])
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForSequenceClassification, float32=True,
                          num_labels=LABELS),
            evaluate=lambda folder: evaluate(str(folder), job.eval_path, c),
            train_metrics=callback.summary)
