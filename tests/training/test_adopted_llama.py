"""Bring your own model: a pretrained Llama-architecture base adopted from an allowed root, trained with LoRA.

The base is what an instruct model such as SmolLM2-135M-Instruct looks like, built here from a config (no
download): saved in bf16, a ChatML template that has `add_generation_prompt` and no {% generation %} markers,
pad equal to EOS (<|im_end|>), and special tokens of its own that nothing uses. A real round, run in this
process through the worker's own code (each stage a real child), adopts it keeping its template and giving it
an unused special token as pad, then trains LoRA adapters for SFT, the reward model, PPO and RLOO; the
deployed RLOO version writes candidates. Without a child: SFT's prompt tokens carry no loss under a template
without markers, in training and in its held-out evaluation, and a whole-weights version of a bf16 base is
stored in bf16.
"""

import json

import pytest
from django.conf import settings

from annotate.models import Message
from annotate.services import tree
from tests.training.test_dpo import TEXTS, with_held_out_pairs
from tests.training.test_serving import run_queued_jobs
from training.models import GeneratedReply, ModelKind, ModelVersion, RunStatus
from training.services import runs, serving, supervisor
from training.trainers import stages

LORA = {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.0}
# SmolLM2-135M-Instruct's own template: a default system turn, ChatML turns, no markers.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<file_sep>"]


def llama_base(folder):
    """Write a 2-layer Llama of width 32 with a SmolLM2-like tokenizer to `folder`, in bf16; return the folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS + ["system user assistant You are a helpful AI"], trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    settings.BASE_MODEL_ROOTS = [tmp_path / "bases"]  # a round adopts only from an allowed root
    return tmp_path


@pytest.fixture
def both_rl_stages():
    """A recipe that trains PPO and RLOO after one SFT and one reward model, so that a single round reaches both."""
    recipe = stages.recipe_register(stages.Recipe(name="ppo-and-rloo", label="PPO and RLOO",
                                                  stages=("sft", "reward", "ppo", "rloo"), description="test only"))
    yield recipe.name
    stages.RECIPES.pop(recipe.name)


def summary(folder) -> dict:
    return json.loads((folder / "platform_training.json").read_text())


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_an_adopted_llama_trains_lora_sft_reward_ppo_and_rloo_and_its_policy_writes_candidates(
    project, member, owner, stores, both_rl_stages
):
    from transformers import AutoTokenizer

    with_held_out_pairs(project, member)
    base_dir = llama_base(stores / "bases" / "llama")
    quick = {"adapter": LORA, "eval_max_rows": 4}
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe=both_rl_stages, seed=2,
                          base_source=str(base_dir), config={
                              "sft": {**quick, "max_steps": 2}, "reward": {**quick, "max_steps": 2},
                              "ppo": {**quick, "total_episodes": 4}, "rloo": {**quick, "max_steps": 1}})
    status = supervisor.run_execute(run_id=run.id)
    run.refresh_from_db()
    assert status == RunStatus.SUCCEEDED, run.error
    versions = {(v.kind, v.algorithm): v for v in ModelVersion.objects.filter(project=project, run=run)}
    assert set(versions) == {(ModelKind.BASE, ""), (ModelKind.SFT, ""), (ModelKind.REWARD, ""),
                             (ModelKind.POLICY, "ppo"), (ModelKind.POLICY, "rloo")}
    store = settings.MODEL_STORE

    # Adopted as it came, but for the pad token: its own template, and an unused special token of its own as pad
    # (no embedding row added, which LoRA would have had to save); the weights stay bf16.
    base = versions[ModelKind.BASE, ""]
    adopted = AutoTokenizer.from_pretrained(store / base.folder)
    assert adopted.chat_template == SMOLLM2_TEMPLATE and adopted.eos_token == "<|im_end|>"
    assert adopted.pad_token == "<repo_name>" and len(adopted) == len(AutoTokenizer.from_pretrained(base_dir))
    assert base.metrics["pad_token_reused"] == 1 and "chat_template_set" not in base.metrics
    assert json.loads((store / base.folder / "config.json").read_text())["dtype"] == "bfloat16"

    # Every later stage registered a LoRA adapter on the merged copy before it; SFT trained on the replies alone.
    for key in [(ModelKind.SFT, ""), (ModelKind.REWARD, ""), (ModelKind.POLICY, "ppo"), (ModelKind.POLICY, "rloo")]:
        folder = store / versions[key].folder
        assert (folder / "adapter_model.safetensors").is_file() and not (folder / "config.json").exists(), key
        assert summary(folder)["adapter"]["r"] == 4 and summary(folder)["adapter"]["new_tokens"] == []
    sft = versions[ModelKind.SFT, ""]
    assert sft.metrics["generation_markers"] == 0 and sft.metrics["eval_loss"] > 0
    for algorithm in ("ppo", "rloo"):
        policy = versions[ModelKind.POLICY, algorithm]
        assert policy.parent == sft and policy.reward_model == versions[ModelKind.REWARD, ""]
        assert {"mean_reward", "kl"} <= set(policy.metrics)

    # The RLOO version, deployed, writes candidates under prompts that have none.
    rloo = versions[ModelKind.POLICY, "rloo"]
    asked = [tree.message_create(project=project, parent=None, role="user", text=f"What is {i} + {i}?",
                                 source="import") for i in (3, 4)]
    serving.deployment_create(project=project, model_version=rloo, by=owner,
                              sampling={"temperature": 1.0, "max_new_tokens": 6, "seed": 1})
    job = serving.generation_enqueue(project=project, by=owner, max_prompts=10)
    run_queued_jobs()
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    written = Message.objects.filter(parent__in=asked, role="assistant")
    assert written.count() > 0 and all(m.origin["model_version"] == rloo.name for m in written)
    assert GeneratedReply.objects.filter(model_version=rloo).count() == written.count()


def adopted_job(tmp_path, stage: str, *, base_model, train_path=None, config=None):
    from training.trainers.common import Job
    from training.trainers.config import stage_config
    from training.trainers.progress import Progress

    return Job(stage=stage, out_dir=tmp_path / stage, work_dir=tmp_path / f"{stage}.work", train_path=train_path,
               eval_path=None, config=stage_config(stage, "tiny", config or {}), progress=Progress(None),
               base_model=str(base_model))


def test_sft_without_generation_markers_puts_no_prompt_token_in_the_loss(tmp_path):
    from training.trainers import base_stage, sft
    from training.trainers.config import has_generation_markers

    assert not has_generation_markers(SMOLLM2_TEMPLATE)  # `add_generation_prompt` is not a marker
    assert has_generation_markers("{%- generation -%}x{% endgeneration %}") and has_generation_markers(
        "{% generation %}x{% endgeneration %}")
    base_stage.adopt(adopted_job(tmp_path, "base", base_model=llama_base(tmp_path / "llama")))
    chats = [[{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"},
              {"role": "user", "content": "And 4 + 4?"}, {"role": "assistant", "content": "8"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1 + 6?"},
              {"role": "assistant", "content": "7"}]]
    train = tmp_path / "sft-train.jsonl"
    train.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in chats))
    job = adopted_job(tmp_path, "sft", base_model=tmp_path / "base", train_path=str(train), config={"adapter": None})
    trainer = sft.trainer_for(job)
    tokenizer = trainer.processing_class
    assert tokenizer.chat_template == SMOLLM2_TEMPLATE  # adopting kept it
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(chats))])
    for row, chat in enumerate(chats):
        labels = batch["labels"][row]
        trained = batch["input_ids"][row][labels != -100].tolist()
        # The last reply and its end of turn, nothing of the system, user or earlier assistant turns.
        assert tokenizer.decode(trained) == chat[-1]["content"] + "<|im_end|>\n"
        assert (labels[labels != -100] == batch["input_ids"][row][labels != -100]).all()
        # The held-out evaluation scores the same tokens.
        ids, mask = sft.loss_mask(tokenizer, chat)
        assert [i for i, m in zip(ids, mask) if m] == trained


def test_a_whole_weights_version_of_a_bf16_base_is_stored_in_bf16(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from training.trainers.common import store_as_started

    base = llama_base(tmp_path / "llama")
    job = adopted_job(tmp_path, "sft", base_model=base)
    trained = AutoModelForCausalLM.from_pretrained(base, dtype=job.load_dtype)  # as a stage on a CPU loads it
    assert trained.dtype == torch.float32
    trained.save_pretrained(tmp_path / "version")
    float32_bytes = (tmp_path / "version" / "model.safetensors").stat().st_size
    store_as_started(job, tmp_path / "version", model_class=AutoModelForCausalLM)
    assert (tmp_path / "version" / "model.safetensors").stat().st_size < 0.55 * float32_bytes
    assert not (tmp_path / "version.bf16").exists()
    stored = AutoModelForCausalLM.from_pretrained(tmp_path / "version", dtype="auto")
    assert stored.dtype == torch.bfloat16
    assert all(torch.equal(a.to(torch.bfloat16), b) for a, b in zip(trained.parameters(), stored.parameters()))
