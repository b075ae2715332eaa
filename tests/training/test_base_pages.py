"""The base models page and API: site staff convert a GGUF file under an allowed root (or one a package ships)
as a job they follow, cancel, and see fail with its reason; a path outside the roots is refused alike whether
it exists or not, and writes nothing; nobody else may. A project admin downloads a LoRA version's adapter in
peft's format, which peft loads on the base; nobody else may, and a version with all its weights says it has none.

The GGUF files are test_bases' tiny Llama; the adapter is peft's own on a tiny GPT the test builds. Nothing trains."""

import io
import json
import os
import threading
import zipfile

import pytest
import torch
from django.db import connection
from django.test import Client

from annotate.models import Role
from annotate.services import accounts as account_services
from tests.helpers import run_queued_jobs, wait_until
from tests.training.test_bases import roots, write_tiny_gguf  # noqa: F401 - roots is a fixture
from tests.training.test_lora import tiny_tokenizer_and_model
from training.models import (
    BaseConversion,
    BaseModel,
    ModelKind,
    ModelVersion,
    RunStatus,
)
from training.services import bases

PAGE = "/base-models/"
API = "/api/base-models/conversions/"


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def project_admin(make_user, project):
    """An admin of a project, but not site staff."""
    user = make_user("project-admin")
    account_services.membership_set(project=project, user=user, role=Role.ADMIN)
    return user


@pytest.mark.django_db(transaction=True)
def test_staff_convert_from_the_page_and_follow_each_job_to_its_end(tmp_path, roots, owner, api_as):  # noqa: F811
    roots[0].mkdir(parents=True)
    write_tiny_gguf(roots[0] / "tiny.gguf")
    write_tiny_gguf(roots[0] / "odd.gguf", architecture="rwkv6")  # GGUF, but nothing transformers can load
    (roots[0] / "later.gguf").write_bytes(b"GGUF and nothing else")
    staff = logged_in(owner)

    queued = staff.post(PAGE, {"name": "tiny", "gguf_path": str(roots[0] / "tiny.gguf")}, follow=True)
    assert b"is queued; a worker on the exports queue runs it" in queued.content
    job = BaseConversion.objects.get(name="tiny")
    assert job.status == RunStatus.QUEUED and job.gguf_path == str(roots[0] / "tiny.gguf") and job.requested_by == owner
    assert f'data-conversion="{job.id}"'.encode() in queued.content and b"waiting for a worker" in queued.content
    assert f"/base-models/conversions/{job.id}/cancel/".encode() in queued.content
    # The same name again while the first is unfinished: refused, nothing queued twice.
    again = staff.post(PAGE, {"name": "tiny", "gguf_path": str(roots[0] / "later.gguf")})
    assert again.status_code == 400 and f"conversion {job.id} of".encode() in again.content
    # Through the API too: 201 with the job's row.
    created = api_as(owner).post(f"{API}create/", {"name": "odd", "gguf_path": str(roots[0] / "odd.gguf")},
                                 format="json")
    assert created.status_code == 201 and created.json()["status"] == "queued" and created.json()["can_cancel"]
    staff.post(PAGE, {"name": "later", "gguf_path": str(roots[0] / "later.gguf")})
    later = BaseConversion.objects.get(name="later")
    cancelled = staff.post(f"/base-models/conversions/{later.id}/cancel/", follow=True)
    assert b"Cancelling conversion" in cancelled.content
    assert BaseConversion.objects.get(name="later").status == RunStatus.CANCELLED

    run_queued_jobs(["exports"])

    page = staff.get(PAGE).content.decode()
    conversions = {c.name: c for c in BaseConversion.objects.all()}
    assert conversions["tiny"].status == RunStatus.SUCCEEDED and conversions["tiny"].base.name == "tiny"
    assert [step["step"] for step in conversions["tiny"].progress][:3] == [
        "reading the GGUF header", "reading the tokenizer", "loading and dequantising the F16 weights"]
    # The registry's facts on the page: architecture, parameters, context, dtype, source, licence, quantisation.
    listed = page[page.index('data-base="tiny"'):]
    listed = listed[:listed.index("</tr>")]
    base = BaseModel.objects.get()
    for shown in ("LlamaForCausalLM", f"{base.facts['parameters']:,}", ">256<", "bfloat16", str(roots[0] / "tiny.gguf"),
                  "apache-2.0", "F16", "weights converted from the file&#x27;s F16 tensors"):
        assert shown in listed, shown
    assert conversions["odd"].status == RunStatus.FAILED
    assert "cannot load a &#x27;rwkv6&#x27; model from GGUF" in page and "cancelled before a worker started it" in page
    assert sorted(path.name for path in roots[0].iterdir()) == ["later.gguf", "odd.gguf", "tiny", "tiny.gguf"]
    detail = api_as(owner).get(f"{API}{conversions['odd'].id}/").json()
    assert detail["status"] == "failed" and "rwkv6" in detail["error"] and not detail["can_cancel"]
    assert api_as(owner).post(f"{API}{conversions['tiny'].id}/cancel/").status_code == 409
    assert api_as(owner).get("/api/base-models/").json()["results"][0]["quantisation"] == "F16"

    # A running conversion cancelled through the API: its converter is killed and it leaves nothing.
    other = bytearray((roots[0] / "tiny.gguf").read_bytes())
    other[-1] ^= 1  # another file: one bit of the last weight differs
    (roots[0] / "other.gguf").write_bytes(bytes(other))
    running = bases.base_conversion_create(name="other", gguf_path=str(roots[0] / "other.gguf"), by=owner)

    def execute():  # as a worker's thread does, with a connection of its own
        try:
            bases.base_conversion_execute(conversion_id=running.id)
        finally:
            connection.close()

    worker = threading.Thread(target=execute)
    worker.start()
    wait_until(lambda: BaseConversion.objects.get(pk=running.id).status == RunStatus.RUNNING, what="the worker's claim")
    answer = api_as(owner).post(f"{API}{running.id}/cancel/")
    assert answer.status_code == 200 and answer.json()["cancel_requested"]
    worker.join(timeout=30)
    running.refresh_from_db()
    assert running.status == RunStatus.CANCELLED and running.error.startswith("cancelled") and running.finished_at
    assert list(BaseModel.objects.values_list("name", flat=True)) == ["tiny"]
    assert sorted(path.name for path in roots[0].iterdir()) == ["later.gguf", "odd.gguf", "other.gguf", "tiny", "tiny.gguf"]


@pytest.mark.django_db
def test_a_path_outside_the_roots_is_refused_alike_and_nothing_is_written(tmp_path, settings, roots, owner,  # noqa: F811
                                                                          api_as):
    roots[0].mkdir(parents=True)
    write_tiny_gguf(tmp_path / "outside.gguf")
    # The model store inside a root (other projects' models): still out of bounds.
    settings.MODEL_STORE = roots[0] / "store"
    settings.MODEL_STORE.mkdir()
    (settings.MODEL_STORE / "x.gguf").write_bytes((tmp_path / "outside.gguf").read_bytes())
    os.symlink(tmp_path / "outside.gguf", roots[0] / "link.gguf")
    refusal = (f"gguf_path must be a .gguf file under one of BASE_MODEL_ROOTS ({roots[0]}), "
               "or name an installed package that ships one")
    for path in (tmp_path / "outside.gguf", tmp_path / "missing.gguf", f"{roots[0]}/../outside.gguf",
                 roots[0] / "link.gguf", "outside.gguf", settings.MODEL_STORE / "x.gguf"):
        page = logged_in(owner).post(PAGE, {"name": "tiny", "gguf_path": str(path)})
        assert page.status_code == 400 and refusal.encode() in page.content, path
        answer = api_as(owner).post(f"{API}create/", {"name": "tiny", "gguf_path": str(path)}, format="json")
        assert answer.status_code == 400 and answer.json() == {"gguf_path": [refusal]}, path
    # Inside a root, the staff's own folder: what is missing is named.
    missing = api_as(owner).post(f"{API}create/", {"name": "tiny", "gguf_path": str(roots[0] / "no.gguf")}, format="json")
    assert missing.status_code == 400 and missing.json() == {"gguf_path": [f"{roots[0] / 'no.gguf'} is not a file"]}
    package = api_as(owner).post(f"{API}create/", {"name": "tiny", "package": "no-such-package-here"}, format="json")
    assert package.status_code == 400 and "the package 'no-such-package-here' is not installed" in package.json()["package"][0]
    assert not BaseConversion.objects.exists() and not BaseModel.objects.exists()
    assert sorted(path.name for path in roots[0].iterdir()) == ["link.gguf", "store"]


@pytest.mark.django_db
def test_only_site_staff_convert_and_project_admins_only_read(roots, owner, project_admin, member, outsider,  # noqa: F811
                                                             api_as):
    roots[0].mkdir(parents=True)
    (roots[0] / "tiny.gguf").write_bytes(b"GGUF and nothing else")
    job = bases.base_conversion_create(name="tiny", gguf_path=str(roots[0] / "tiny.gguf"), by=owner)
    wanted = {"name": "mine", "gguf_path": str(roots[0] / "tiny.gguf")}

    page = logged_in(project_admin).get(PAGE)
    assert page.status_code == 200 and b"Registered" in page.content
    assert b"Convert a GGUF file" not in page.content and b"tiny.gguf" not in page.content
    assert logged_in(project_admin).post(PAGE, wanted).status_code == 403
    assert logged_in(project_admin).post(f"/base-models/conversions/{job.id}/cancel/").status_code == 403
    assert api_as(project_admin).get("/api/base-models/").status_code == 200
    for user in (project_admin, member, outsider):
        assert api_as(user).post(f"{API}create/", wanted, format="json").status_code == 403
        assert api_as(user).get(API).status_code == 403
        assert api_as(user).get(f"{API}{job.id}/").status_code == 403
        assert api_as(user).post(f"{API}{job.id}/cancel/").status_code == 403
    for user in (member, outsider):
        assert logged_in(user).get(PAGE).status_code == 403
        assert api_as(user).get("/api/base-models/").status_code == 403
    assert api_as(None).get("/api/base-models/").status_code in (401, 403)
    assert list(BaseConversion.objects.values_list("name", "status")) == [("tiny", RunStatus.QUEUED)]
    assert logged_in(owner).get(PAGE).status_code == 200


# ---------------------------------------------------------------------------------------------
# Adapter download


@pytest.fixture
def adapter_version(tmp_path, settings, project):
    """An SFT version that is a LoRA adapter as a stage leaves one: peft's files, the tokenizer, the summary, merged/
    beside them, and a pickle of the trainer's arguments; with its base and the peft model it was saved from."""
    from peft import LoraConfig, get_peft_model

    settings.MODEL_STORE = tmp_path / "models"
    tokenizer, model = tiny_tokenizer_and_model()
    base_dir = settings.MODEL_STORE / f"project-{project.id}/base"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    torch.manual_seed(0)
    # Random B matrices (peft starts them at zero): an adapter that changes what the base says.
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False))
    folder = settings.MODEL_STORE / f"project-{project.id}/run-1/sft"
    peft_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "platform_training.json").write_text(json.dumps(
        {"stage": "sft", "adapter": {"type": "lora", "r": 4, "alpha": 8, "base": str(base_dir), "merged": "merged"}}))
    (folder / "merged").mkdir()
    (folder / "merged" / "config.json").write_text("{}")
    (folder / "training_args.bin").write_bytes(b"\x80\x02}q\x00.")
    base = ModelVersion.objects.create(project=project, kind=ModelKind.BASE, version=1, folder=f"project-{project.id}/base")
    sft = ModelVersion.objects.create(project=project, kind=ModelKind.SFT, version=1, parent=base,
                                      folder=f"project-{project.id}/run-1/sft")
    return sft, base, peft_model.eval()


@pytest.mark.django_db
def test_a_project_admin_downloads_a_lora_adapter_that_peft_loads_on_its_base(
        tmp_path, settings, adapter_version, project, owner, member, outsider, api_as, make_user):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sft, base, trained = adapter_version
    url = f"/api/projects/{project.id}/models/{sft.id}/adapter/"
    answer = api_as(owner).get(url)
    assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    assert answer["Content-Disposition"] == 'attachment; filename="sft-v1-adapter.zip"'
    zipped = zipfile.ZipFile(io.BytesIO(b"".join(answer.streaming_content)))
    names = set(zipped.namelist())
    assert {"adapter_config.json", "adapter_model.safetensors", "platform_training.json", "tokenizer.json",
            "tokenizer_config.json"} <= names
    assert not [name for name in names if "/" in name or name.endswith(".bin")]  # no merged/, no pickle
    zipped.extractall(tmp_path / "downloaded")

    loaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(settings.MODEL_STORE / base.folder), tmp_path / "downloaded").eval()
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, trained(ids).logits)
        with loaded.disable_adapter():
            assert not torch.allclose(loaded(ids).logits, trained(ids).logits)  # the adapter is what it loaded

    # The version's page links the download, which gives the same zip.
    page = logged_in(owner).get(f"/projects/{project.id}/models/{sft.id}/")
    assert page.status_code == 200 and b"Download the adapter" in page.content
    download = logged_in(owner).get(f"/projects/{project.id}/models/{sft.id}/adapter.zip")
    assert download.status_code == 200 and set(zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).namelist()) == names
    assert f"/projects/{project.id}/models/{sft.id}/".encode() in logged_in(owner).get(f"/projects/{project.id}/models/").content

    # A version with all its weights says it has no adapter.
    full = api_as(owner).get(f"/api/projects/{project.id}/models/{base.id}/adapter/")
    assert full.status_code == 409 and "base-v1 is not a LoRA adapter" in full.json()["model_version"][0]
    assert b"holds all its weights" in logged_in(owner).get(f"/projects/{project.id}/models/{base.id}/").content
    refused = logged_in(owner).get(f"/projects/{project.id}/models/{base.id}/adapter.zip", follow=True)
    assert b"base-v1 is not a LoRA adapter" in refused.content

    # Members below admin get 403, outsiders and other projects' admins 404, as everywhere in the API.
    elsewhere = account_services.project_create(name="Elsewhere", created_by=make_user("other", staff=True))
    for user, code in ((member, 403), (outsider, 404)):
        assert api_as(user).get(url).status_code == code
        assert logged_in(user).get(f"/projects/{project.id}/models/{sft.id}/adapter.zip").status_code == code
        assert logged_in(user).get(f"/projects/{project.id}/models/{sft.id}/").status_code == code
    assert api_as(elsewhere.created_by).get(url).status_code == 404
    assert api_as(elsewhere.created_by).get(f"/api/projects/{elsewhere.id}/models/{sft.id}/adapter/").status_code == 404
