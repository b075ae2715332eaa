"""Adopting a base: what `base_source` may name, and the directories refused before a round exists.

A round names its base by a registered base model's name or a directory under BASE_MODEL_ROOTS; never
a folder of the model or snapshot store, never outside the roots by `..` or a symlink, and a path
outside them is refused in the same words whether it exists or not. A directory that is not a model
to adopt is refused with its reason (400) when the round is created, and again by the base stage's
child. The model directories here are JSON files and a safetensors file of one number: the checks read
files, they never load a model, so nothing here trains."""

import json
import os
from pathlib import Path

import numpy
import pytest
from django.core.exceptions import ValidationError
from safetensors.numpy import save_file

from training.models import BaseModel, RunStatus, StageStatus, TrainingRun
from training.services import runs, supervisor
from training.trainers.config import config_problems, stage_config
from tests.training.factories import arithmetic_project

pytestmark = pytest.mark.django_db

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 2048}
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


@pytest.fixture
def roots(tmp_path, settings):
    """One allowed root; the stores live in a data folder beside it, as they do by default."""
    settings.BASE_MODEL_ROOTS = [tmp_path / "bases"]
    settings.MODEL_STORE = tmp_path / "data" / "models"
    settings.SNAPSHOT_STORE = tmp_path / "data" / "snapshots"
    (tmp_path / "bases").mkdir()
    return tmp_path / "bases"


@pytest.fixture(autouse=True)
def data(project, member):
    """Enough to train on: a round whose data could not train is refused before its base is looked at."""
    return arithmetic_project(project, member, prompts=12)


def model_dir(folder: Path, *, config=None, tokenizer_config=None, weights=("model.safetensors",),
              tokenizer=("tokenizer.json",)) -> Path:
    """Write the files of a Hugging Face causal LM directory, as small as the checks allow."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(LLAMA if config is None else config))
    tok_config = {"eos_token": "</s>", "chat_template": TEMPLATE} if tokenizer_config is None else tokenizer_config
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    for name in tokenizer:
        (folder / name).write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}}}))
    for name in weights:
        if name.endswith(".safetensors"):
            save_file({"x": numpy.zeros(1, dtype=numpy.float32)}, str(folder / name))
        else:
            (folder / name).write_bytes(b"\x80\x02}q\x00.")  # a pickle: what torch.load would unpickle
    return folder


def create(api_as, user, project, base_source, **extra):
    return api_as(user).post(f"/api/projects/{project.id}/runs/create/",
                             {"preset": "tiny", "base_source": str(base_source), **extra}, format="json")


def refusal(response) -> str:
    assert response.status_code == 400, response.content
    assert not TrainingRun.objects.exists()
    return " ".join(response.json()["base_source"])


def test_a_directory_under_a_root_is_adopted_and_stored_as_its_real_path(api_as, owner, project, roots):
    folder = model_dir(roots / "llama")
    created = create(api_as, owner, project, f"{roots}/./llama/")
    assert created.status_code == 201, created.content
    assert created.json()["base_source"] == str(folder)
    assert [s["name"] for s in created.json()["stages"]] == ["base", "sft", "reward", "ppo"]


def test_a_registered_base_model_is_named_and_resolves_to_its_folder(api_as, owner, project, roots):
    folder = model_dir(roots / "smollm2")
    BaseModel.objects.create(name="smollm2", folder=str(folder))
    created = create(api_as, owner, project, "smollm2")
    assert created.status_code == 201, created.content
    assert TrainingRun.objects.get().base_source == str(folder)


def test_a_registered_base_model_outside_the_roots_is_refused(api_as, owner, project, roots, tmp_path):
    BaseModel.objects.create(name="moved", folder=str(model_dir(tmp_path / "old-root" / "moved")))
    assert "'moved' is registered at" in refusal(create(api_as, owner, project, "moved"))


def test_a_path_outside_the_roots_is_refused_alike_whether_it_exists_or_not(api_as, owner, project, roots, tmp_path):
    real = model_dir(tmp_path / "elsewhere")
    paths = (real, tmp_path / "nowhere", "/etc", "/no/such/dir", "relative/dir", "not-a-registered-name")
    answers = {refusal(create(api_as, owner, project, path)) for path in paths}
    assert len(answers) == 1
    [answer] = answers
    assert "registered base model" in answer and str(roots) in answer
    assert "nowhere" not in answer and "exist" not in answer


def test_dot_dot_and_symlinks_cannot_leave_a_root(api_as, owner, project, roots, tmp_path):
    outside = model_dir(tmp_path / "elsewhere")
    outsider = refusal(create(api_as, owner, project, outside))
    assert refusal(create(api_as, owner, project, f"{roots}/../elsewhere")) == outsider
    (roots / "link").symlink_to(outside)
    assert refusal(create(api_as, owner, project, roots / "link")) == outsider
    # A symlink that stays inside the root is followed: the round stores where it leads.
    (roots / "alias").symlink_to(model_dir(roots / "llama"))
    created = create(api_as, owner, project, roots / "alias")
    assert created.status_code == 201 and created.json()["base_source"] == str(roots / "llama")


def test_another_projects_models_are_refused_even_when_a_root_holds_the_store(
    api_as, owner, project, roots, tmp_path, settings
):
    settings.BASE_MODEL_ROOTS = [tmp_path / "data"]  # the whole data folder, stores included
    sft = model_dir(settings.MODEL_STORE / "project-99" / "run-1" / "sft")
    snapshot = model_dir(settings.SNAPSHOT_STORE / "project-99" / "pairs")
    outsider = refusal(create(api_as, owner, project, tmp_path / "nowhere"))
    assert refusal(create(api_as, owner, project, sft)) == outsider
    assert refusal(create(api_as, owner, project, snapshot)) == outsider
    (tmp_path / "data" / "innocent").symlink_to(sft)
    assert refusal(create(api_as, owner, project, tmp_path / "data" / "innocent")) == outsider
    assert create(api_as, owner, project, model_dir(tmp_path / "data" / "mine")).status_code == 201


def test_a_nul_byte_is_refused_not_an_error(api_as, owner, project, roots):
    """The API's own field refuses it; manage.py train calls the service, which must too."""
    outsider = refusal(create(api_as, owner, project, "/no/such/dir"))
    with pytest.raises(ValidationError) as refused:
        runs.run_create(project=project, by=owner, base_source=f"{roots}/llama\x00")
    assert refused.value.message_dict["base_source"] == [outsider]


def test_a_missing_folder_inside_a_root_is_named(api_as, owner, project, roots):
    assert "is not a directory" in refusal(create(api_as, owner, project, roots / "typo"))


# One test per reason a directory under a root is still not a model to adopt.

@pytest.mark.parametrize("config, words", [
    ({**LLAMA, "architectures": ["BertModel"]}, "it is a BertModel, not a causal language model"),
    ({"model_type": "llama", "max_position_embeddings": 2048}, "names no architecture"),
])
def test_not_a_causal_lm_is_refused(api_as, owner, project, roots, config, words):
    assert words in refusal(create(api_as, owner, project, model_dir(roots / "m", config=config)))


@pytest.mark.parametrize("where, extra", [
    ("config.json", {"auto_map": {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}}),
    ("config.json", {"trust_remote_code": True}),
    ("tokenizer_config.json", {"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}),
])
def test_a_model_that_would_run_its_own_code_is_refused(api_as, owner, project, roots, where, extra):
    folder = model_dir(roots / "m")
    (folder / where).write_text(json.dumps({**json.loads((folder / where).read_text()), **extra}))
    assert f"its {where} asks for" in refusal(create(api_as, owner, project, folder))


def test_pickled_weights_are_refused(api_as, owner, project, roots):
    folder = model_dir(roots / "m", weights=("pytorch_model.bin",))
    assert "only pickled files (pytorch_model.bin)" in refusal(create(api_as, owner, project, folder))
    assert "no weights" in refusal(create(api_as, owner, project, model_dir(roots / "none", weights=())))


def test_a_sharded_index_of_safetensors_is_adopted_but_not_one_that_reaches_outside(api_as, owner, project, roots):
    folder = model_dir(roots / "sharded", weights=("model-00001-of-00002.safetensors",
                                                   "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert create(api_as, owner, project, folder).status_code == 201
    TrainingRun.objects.all().delete()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../other/x.safetensors"}}))
    assert "../other/x.safetensors" in refusal(create(api_as, owner, project, folder))


def test_missing_tokenizer_files_are_refused(api_as, owner, project, roots):
    folder = model_dir(roots / "m", tokenizer=())
    assert "tokenizer files are missing" in refusal(create(api_as, owner, project, folder))
    # A sentencepiece model is a tokenizer too.
    assert create(api_as, owner, project, model_dir(roots / "sp", tokenizer=("tokenizer.model",))).status_code == 201


def test_no_chat_template_is_refused(api_as, owner, project, roots):
    folder = model_dir(roots / "m", tokenizer_config={"eos_token": "</s>"})
    assert "no chat template" in refusal(create(api_as, owner, project, folder))
    (folder / "chat_template.jinja").write_text(TEMPLATE)  # where transformers 5 saves it
    assert create(api_as, owner, project, folder).status_code == 201


def test_a_context_shorter_than_a_stages_rows_is_refused(api_as, owner, project, roots):
    folder = model_dir(roots / "m", config={**LLAMA, "max_position_embeddings": 64})
    answer = refusal(create(api_as, owner, project, folder))
    assert "sft: max_length (128) is longer than the adopted model's context (64)" in answer
    fitting = {name: {"max_length": 64} for name in ("base", "sft", "reward")}
    assert create(api_as, owner, project, folder, config=fitting).status_code == 201


def test_the_base_stage_checks_the_directory_again_before_loading_it(roots):
    """The child's own check (training.trainers.run): the directory may have changed since the round was created."""
    folder = model_dir(roots / "m", weights=("pytorch_model.bin",), tokenizer_config={"eos_token": "</s>"})
    problems = config_problems("base", stage_config("base", "tiny", {}), train_rows=0, model_dir=str(folder))
    assert any("only pickled files" in p for p in problems) and any("no chat template" in p for p in problems)
    assert config_problems("base", stage_config("base", "tiny", {}), train_rows=0,
                           model_dir=str(model_dir(roots / "good"))) == []


def test_a_worker_refuses_a_directory_spoiled_after_the_round_was_created(project, member, owner, roots):
    folder = model_dir(roots / "m")
    run = runs.run_create(project=project, by=owner, recipe="dpo", base_source=str(folder))
    os.remove(folder / "model.safetensors")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")

    assert supervisor.run_execute(run_id=run.id) == RunStatus.FAILED
    run.refresh_from_db()
    assert "base failed: refused: the base model to adopt: its weights are only pickled files" in run.error
    assert run.stages.get(name="base").status == StageStatus.FAILED
