"""The demo from an adopted pretrained base (`demo_rounds --base`): the same loop, nothing pretrained.

The base is a tiny Llama the test writes under an allowed root, shaped as SmolLM2-135M-Instruct is (its ChatML
template with a default system turn and no {% generation %} markers, pad equal to EOS), so nothing is downloaded.
Each stage trains two steps: how stages learn is other tests' (test_trainers, test_lora); this one is about the
demo around them: the project of that base, the adopting round, the settings it chooses, the figures it prints.
"""

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from annotate.models import CorpusText, Project
from training.demo import data as demo_data
from training.demo.general import GENERAL_PROMPTS, general_check
from training.demo.project import demo_project_create, demo_project_name
from training.demo.rounds import ADOPTED_COMMON, ADOPTED_CONFIG
from training.models import ModelKind, ModelVersion, RunStage, TrainingRun

pytestmark = [pytest.mark.slow, pytest.mark.training, pytest.mark.django_db(transaction=True)]

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    settings.DATA_DIR = tmp_path
    settings.BASE_MODEL_ROOTS = [tmp_path / "bases"]  # a round adopts only from an allowed root
    return tmp_path


@pytest.fixture
def queue_emptied():
    """The demo trains in its own process (supervisor.run_execute) and leaves its round's job queued, for no worker
    here: a later test whose round gets the same id (test_rounds resets the sequences) would find its lock taken.
    The flush between transactional tests leaves the queue's tables alone."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs")


def tiny_llama(folder):
    """Write a 2-layer Llama of width 32 whose tokenizer knows the demo's words; return its folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [p.prompt for p in demo_data.prompt_pool(200)] + [g.prompt for g in GENERAL_PROMPTS] + [
        "system user assistant You are a helpful AI The answer is It is Sure, the answer is"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_general_check_wants_the_answer_as_a_word():
    capital, shout = GENERAL_PROMPTS[0], next(g for g in GENERAL_PROMPTS if g.case_sensitive)
    assert general_check(capital, "The capital of France is Paris.") and general_check(capital, "paris")
    assert not general_check(capital, "Parisian food is good.") and not general_check(capital, "The answer is 7.")
    assert general_check(shout, "CAT") and not general_check(shout, "cat")
    assert len(GENERAL_PROMPTS) == 30 == len({g.prompt for g in GENERAL_PROMPTS})
    # None of them is a problem of the demo's family: they measure something else.
    assert not any(demo_data.answer_of(g.prompt) is not None for g in GENERAL_PROMPTS)


def test_demo_rounds_from_an_adopted_base_trains_no_base_and_prints_the_general_ability(stores, queue_emptied, capsys):
    base = tiny_llama(stores / "bases" / "tiny-llama")
    # A base outside the allowed roots is refused by the round's own fence, before any project or annotator.
    with pytest.raises(CommandError, match="BASE_MODEL_ROOTS"):
        call_command("demo_rounds", "--base", str(stores / "elsewhere" / "tiny-llama"))
    assert not Project.objects.exists()

    # 12 seed prompts instead of 300: demo_rounds then finds the project of that base and runs its round 1.
    project = demo_project_create(seed_prompts=12, base=str(base))
    assert project.name == demo_project_name(str(base)) == "Demo: arithmetic assistant, from tiny-llama"
    assert not CorpusText.objects.filter(project=project).exists()  # nothing to pretrain on: the base is adopted
    few_steps = {"sft": {"max_steps": 2}, "dpo": {"max_steps": 2, "eval_max_rows": 4}}
    call_command("demo_rounds", "--base", str(base), "--preset", "tiny", "--recipe", "dpo", "--heldout", "8",
                 "--prompts-per-round", "4", "--config", json.dumps(few_steps))
    out = capsys.readouterr().out

    run = TrainingRun.objects.get(project=project)
    assert run.status == "succeeded" and run.base_source == str(base.resolve())
    # The base stage adopted the model as it is (no step trained), and SFT started from it.
    first = RunStage.objects.filter(run=run).order_by("order").first()
    assert (first.name, first.total, first.step) == ("base", 0, 0)
    base_version = ModelVersion.objects.get(project=project, kind=ModelKind.BASE)
    assert base_version.metrics["pad_token_reused"] == 1  # pad was EOS; an unused special token took its place
    assert ModelVersion.objects.get(project=project, kind=ModelKind.SFT).parent == base_version
    # The demo's settings for a pretrained model, with the round's own over them.
    assert run.config["sft"] == {**ADOPTED_COMMON, **ADOPTED_CONFIG["sft"], "max_steps": 2}
    assert run.config["dpo"] == {**ADOPTED_COMMON, **ADOPTED_CONFIG["dpo"], **few_steps["dpo"]}

    assert "from " + str(base) in out and "stages: base " in out and ", dpo " in out and "load average" in out
    assert "hidden check on 8 held-out prompts" in out
    assert "general ability on 30 prompts of our own" in out
    for version in ModelVersion.objects.filter(project=project).exclude(kind=ModelKind.REWARD):
        assert version.metrics["hidden_check_n"] == 8 and version.metrics["general_check_n"] == 30
        low, high = version.metrics["general_check_ci95"]
        assert 0 <= low <= version.metrics["general_check"] <= high <= 1
        assert f"    {version.name:<10} {100 * version.metrics['general_check']:5.1f}%" in out
    stored = json.loads((stores / "demo-rounds" / f"project-{project.id}.json").read_text())[0]
    assert stored["base"] == str(base) and set(stored["seconds"]["stages"]) == {"base", "sft", "dpo"}
    assert [len(v["general"]["replies"]) for v in stored["versions"].values()] == [30, 30, 30]
