"""The stage registry is the one table: a stage registered once shows on the page, in the API schema,
in `manage.py train --help` and in the README's table, and a round of its recipe runs its stages; the
settings are typed; PPO is a recipe only where the installed TRL has trl.experimental.ppo."""

import json
import os
import sys
from pathlib import Path

import pytest
from django.core.management import load_command_class
from django.test import Client

from tests.helpers import REPO_ROOT, child_env, run_python
from tests.training.factories import arithmetic_project
from training.models import TrainingRun
from training.services import runs
from training.trainers import stages
from training.trainers.config import config_problems, stage_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def echo_stage():
    """A test-only stage (DPO's trainer under another name) and a recipe that uses it."""
    stages.stage_register(stages.Stage(
        name="echo", label="Echo stage for tests", reads="preference", starts_from="sft", registers="policy",
        settings=stages.DPOSettings, module="dpo", checks=None, evaluation="what DPO measures",
        presets={"tiny": {"max_steps": 2}},
    ))
    stages.recipe_register(stages.Recipe("echo", "Echo", ("sft", "echo"), "SFT, then the test-only echo stage"))
    yield stages.STAGES["echo"]
    stages.stage_unregister("echo")


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_a_registered_stage_is_on_the_page_in_the_schema_in_the_cli_and_in_the_readme_table(
    echo_stage, project, member, owner
):
    filled = arithmetic_project(project, member, prompts=12)
    page = logged_in(owner).get(f"/projects/{filled.id}/training/")
    assert b"Echo stage for tests" in page.content
    schema = logged_in(owner).get("/api/schema/?format=json").json()
    recipe = schema["components"]["schemas"]["RunCreateApiInput"]["properties"]["recipe"]
    assert "test-only echo stage" in recipe["description"]
    assert "echo" in schema["components"]["schemas"]["RecipeEnum"]["enum"]
    help_text = load_command_class("training", "train").create_parser("manage.py", "train").format_help()
    assert "echo: sft -> echo" in " ".join(help_text.split())
    assert "| `echo` | sft → echo |" in stages.registry_markdown()

    run = runs.run_create(project=filled, by=owner, recipe="echo", config={"echo": {"beta": 0.3}})
    assert list(run.stages.values_list("name", flat=True)) == ["base", "sft", "echo"]
    created = logged_in(owner).post(f"/projects/{filled.id}/training/", {
        "preset": "tiny", "recipe": "echo", "seed": 0, "processes": 1, "config": '{"echo": {"beta": -1}}'})
    assert created.status_code == 400 and b"beta must be greater than 0, not -1" in created.content
    assert stage_config("echo", "tiny")["max_steps"] == 2


def test_the_readme_lists_the_registry_as_it_is():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert stages.registry_markdown() in readme, "regenerate the README's table: stages.registry_markdown()"


def test_settings_are_typed_and_every_preset_passes_its_stage_settings():
    for name, entry in stages.STAGES.items():
        for preset in stages.PRESET_NAMES:
            merged = stage_config(name, preset)
            assert entry.settings.model_validate(merged), (name, preset)
    problems = config_problems("sft", {"learning_rate": 1e999, "max_steps": True, "bf16": 1},
                               train_rows=100, check_models=False)
    assert problems == ["learning_rate must be a finite number, not inf", "max_steps must be an integer, not True",
                        "bf16 must be true, false or \"auto\", not 1"]


def test_an_api_round_with_a_bad_setting_or_an_unknown_recipe_is_refused_with_the_reason(
    project, member, owner, api_as
):
    filled = arithmetic_project(project, member, prompts=12)
    create = f"/api/projects/{filled.id}/runs/create/"
    refused = api_as(owner).post(create, {"recipe": "dpo", "config": {"dpo": {"loss_type": "nope"}}}, format="json")
    assert refused.status_code == 400 and "unknown loss_type 'nope'" in json.dumps(refused.json())
    unknown = api_as(owner).post(create, {"recipe": "gossip"}, format="json")
    assert unknown.status_code == 400 and "recipe" in unknown.json()
    assert not TrainingRun.objects.exists()
    # The old field name still works.
    made = api_as(owner).post(create, {"algorithm": "dpo"}, format="json")
    assert made.status_code == 201 and made.json()["recipe"] == "dpo"


def trl_without_ppo(folder: Path) -> Path:
    """A copy of the installed TRL made of links, less trl/experimental/ppo: TRL 1.13 as far as we care."""
    import trl

    real = Path(trl.__file__).parent
    fake = folder / "trl"
    fake.mkdir()
    for entry in real.iterdir():
        if entry.name != "experimental":
            (fake / entry.name).symlink_to(entry)
    (fake / "experimental").mkdir()
    for entry in (real / "experimental").iterdir():
        if entry.name != "ppo":
            (fake / "experimental" / entry.name).symlink_to(entry)
    return folder


@pytest.mark.django_db(transaction=True)
def test_without_trl_ppo_the_ppo_recipe_is_refused_with_the_reason_and_the_others_still_start(
    tmp_path, project, member, owner
):
    filled = arithmetic_project(project, member, prompts=12)
    path = trl_without_ppo(tmp_path)
    env = child_env(PYTHONPATH=os.pathsep.join([str(path), str(REPO_ROOT / "platform"), str(REPO_ROOT)]),
                    DJANGO_SETTINGS_MODULE="platform_config.settings")
    code = f"""
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from training.trainers import stages
import trl
owner = get_user_model().objects.get(pk={owner.pk})
client = Client()
client.force_login(owner)
api = client.post("/api/projects/{filled.id}/runs/create/", {{"recipe": "ppo"}}, content_type="application/json")
page = client.post("/projects/{filled.id}/training/", {{"preset": "tiny", "recipe": "ppo", "seed": 0, "processes": 1}})
default = client.post("/api/projects/{filled.id}/runs/create/", {{}}, content_type="application/json")
# The stages that remain must still import: none may reach trl.experimental.ppo.
import training.trainers.rloo, training.trainers.grpo, training.trainers.dpo, training.trainers.evaluate
print(json.dumps({{"recipes": list(stages.RECIPES), "stages": list(stages.STAGES), "trl": trl.__file__,
                  "api": [api.status_code, api.json()], "page": page.status_code,
                  "page_says": "trl.experimental.ppo" in page.content.decode(),
                  "default": [default.status_code, default.json().get("recipe")]}}))
"""
    result = run_python(code, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["trl"].startswith(str(tmp_path))
    assert "ppo" not in seen["recipes"] and "ppo" not in seen["stages"] and "dpo" in seen["recipes"]
    assert seen["api"][0] == 400 and "TRL removed PPO in 1.13" in json.dumps(seen["api"][1])
    assert seen["page"] == 400 and seen["page_says"]
    assert seen["default"] == [201, "dpo"]
    cli = run_python(
        "import sys; sys.argv = ['manage.py', 'train', '--project', '%d', '--recipe', 'ppo']; "
        "import runpy; runpy.run_path('manage.py', run_name='__main__')" % filled.id, env=env, timeout=300)
    assert cli.returncode != 0 and "TRL removed PPO in 1.13" in cli.stderr
    assert sys.executable  # the children ran on this interpreter
