"""Each exported kind loads with `datasets` and takes one real TRL step on a tiny model."""

import datasets
import pytest
import torch
from django.conf import settings
from transformers import GPT2ForSequenceClassification

from annotate.models import Message, Ranking
from annotate.services import tree
from tests.annotate.factories import ranking_items
from training import services
from training.trainers.scratch import gpt_from_config, tokenizer_train

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.training]


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def load(snapshot):
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    return datasets.load_dataset("json", data_files=str(folder / f"{snapshot.kind}-train.jsonl"), split="train")


@pytest.fixture
def tiny(project):
    texts = list(Message.objects.filter(project=project).values_list("text", flat=True)) or ["what is one plus one"]
    tokenizer = tokenizer_train(texts * 3, vocab_size=400)
    return tokenizer


def filled_project(project, member):
    for candidate_set in ranking_items(project, 24, k=3):
        Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[m] for m in candidate_set.message_ids])
        Message.objects.filter(pk=candidate_set.message_ids[0]).update(review_state="accepted", source="annotator", author=member)


def test_sft_snapshot_trains_one_step_with_assistant_only_loss(project, member, tmp_path):
    from trl import SFTConfig, SFTTrainer

    filled_project(project, member)
    dataset = load(services.snapshot_create(project=project, kind="sft"))
    tokenizer = tokenizer_train(Message.objects.values_list("text", flat=True), vocab_size=400)
    model = gpt_from_config(tokenizer, layers=1, heads=2, width=32, context=128)
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=4, report_to=[], use_cpu=True,
        max_length=128, assistant_only_loss=True, save_strategy="no", logging_steps=1,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    assert result.global_step == 1 and torch.isfinite(torch.tensor(result.training_loss))


def test_preference_snapshot_trains_a_reward_model_one_step(project, member, tmp_path):
    from trl import RewardConfig, RewardTrainer

    filled_project(project, member)
    dataset = load(services.snapshot_create(project=project, kind="preference"))
    tokenizer = tokenizer_train(Message.objects.values_list("text", flat=True), vocab_size=400)
    base = gpt_from_config(tokenizer, layers=1, heads=2, width=32, context=128)
    model = GPT2ForSequenceClassification(base.config.__class__(**{**base.config.to_dict(), "num_labels": 1}))
    args = RewardConfig(
        output_dir=str(tmp_path / "rm"), max_steps=1, per_device_train_batch_size=4, report_to=[], use_cpu=True,
        max_length=128, save_strategy="no",
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    assert trainer.train().global_step == 1


def test_prompt_snapshot_tokenizes_for_ppo(project, member):
    prompt = tree.message_create(project=project, parent=None, role="user", text="What is 4 + 4?", source="import")
    tree.message_create(project=project, parent=prompt, role="assistant", text="8", source="model")
    for i in range(30):
        tree.message_create(project=project, parent=None, role="user", text=f"What is {i} * 2?", source="import")
    dataset = load(services.snapshot_create(project=project, kind="prompts"))
    tokenizer = tokenizer_train(Message.objects.values_list("text", flat=True), vocab_size=400)
    # PPO in trl 1.12 takes pre-tokenized `input_ids` only, ending in the assistant marker.
    tokenized = dataset.map(
        lambda row: {
            "input_ids": tokenizer.apply_chat_template(
                row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False
            )
        },
        remove_columns=dataset.column_names,
    )
    assert tokenized.column_names == ["input_ids"]
    assert all(ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>") for ids in tokenized["input_ids"])
