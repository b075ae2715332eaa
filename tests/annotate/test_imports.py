"""Importing files as an admin would: every format, refusals by line, nothing half-written."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from annotate.importers import ImportRefused, import_run
from annotate.models import CandidateSet, CorpusText, ImportBatch, ImportJob, Message, Ranking, WorkItem
from annotate.services import accounts as account_services
from annotate.services import imports

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).parent / "fixtures"


def run(project, name, format):
    with (FIXTURES / name).open("rb") as stream:
        return import_run(project=project, format=format, stream=stream, filename=name)


def texts(project, **filters):
    return list(Message.objects.filter(project=project, **filters).order_by("id").values_list("text", flat=True))


def database_rows():
    return (Message.objects.count(), CandidateSet.objects.count(), Ranking.objects.count(),
            ImportBatch.objects.count(), CorpusText.objects.count(), WorkItem.objects.count())


def refused(project, name, format):
    before = database_rows()
    with pytest.raises(ImportRefused) as error:
        run(project, name, format)
    assert database_rows() == before, "a refused import wrote something"
    return error.value


def test_prompts_from_jsonl_and_csv_wait_for_demonstrations(project):
    batch = run(project, "prompts.jsonl", "prompts-jsonl")
    assert batch.counts["messages"] == 3 and batch.counts["waiting_for_demonstrations"] == 3
    run(project, "prompts.csv", "prompts-csv")
    assert texts(project)[-2:] == ["What is 7 * 6?", 'Say "hi", then stop.']
    assert WorkItem.objects.filter(kind="demonstration").count() == 5
    first = Message.objects.filter(project=project).order_by("id").first()
    assert (first.source, first.root_id, first.origin["line"]) == ("import", first.id, 1)


def test_messages_chats_become_trees(project):
    run(project, "messages.jsonl", "messages")
    chat = Message.objects.filter(project=project, text="30").get()
    path = []
    node = chat
    while node:
        path.append((node.role, node.text))
        node = node.parent
    assert path[::-1] == [("user", "What is 5 + 5?"), ("assistant", "10"), ("user", "And times 3?"), ("assistant", "30")]
    assert chat.depth == 3 and chat.root.text == "What is 5 + 5?"
    assert not WorkItem.objects.exists()  # complete chats ask for nothing


def test_sharegpt_maps_human_and_gpt_and_a_trailing_question_waits(project):
    batch = run(project, "sharegpt.jsonl", "sharegpt")
    assert batch.counts == {"messages": 5, "conversations": 2, "rankings": 0, "waiting_for_demonstrations": 1}
    assert WorkItem.objects.get(kind="demonstration").message.text == "What is 1 + 1?"


def test_pairs_in_every_form_become_comparisons_with_a_pseudonymous_source(project):
    batch = run(project, "pairs.jsonl", "pairs")
    assert batch.counts["rankings"] == 3
    # The first two lines share their prompt: one tree, four sibling replies, two comparisons.
    assert texts(project, parent=None) == ["What is 3 + 4?", "Is 9 prime?"]
    for ranking in Ranking.objects.select_related("candidate_set"):
        better, worse = ranking.tiers
        assert ranking.annotator is None and ranking.external_annotator.startswith("pairs:")
        assert Message.objects.get(pk=better[0]).parent_id == ranking.candidate_set.parent_id
    chosen = [Message.objects.get(pk=r.tiers[0][0]).text for r in Ranking.objects.order_by("id")]
    assert chosen == ["7", "3 + 4 = 7.", "No, 9 = 3 * 3."]


def test_hh_text_is_split_into_the_shared_prompt_and_two_replies(project):
    run(project, "hh.jsonl", "pairs")
    second = Ranking.objects.order_by("id")[1]
    chosen, rejected = (Message.objects.get(pk=tier[0]) for tier in second.tiers)
    assert (chosen.text, rejected.text) == ("32", "10")
    assert chosen.parent.text == "What is 2 ** 5?" and chosen.depth == 3


def test_hh_pair_without_a_shared_prompt_is_refused_by_line(project):
    error = refused(project, "hh-no-shared-prompt.jsonl", "pairs")
    assert error.line == 3 and "do not share their prompt" in error.reason


def test_broken_json_and_wrong_encoding_name_their_line(project):
    assert refused(project, "prompts-bad-json.jsonl", "prompts-jsonl").line == 3
    latin = refused(project, "prompts-latin1.jsonl", "prompts-jsonl")
    assert latin.line == 2 and "not utf-8" in latin.reason


def test_wrong_format_fields_are_named(project):
    error = refused(project, "pairs.jsonl", "messages")
    assert (error.line, error.reason) == (1, "no 'messages' or 'conversations' field")
    assert "no 'prompt' or 'text' column" in refused(project, "pairs.jsonl", "prompts-csv").reason


def test_the_same_file_is_not_imported_twice(project):
    run(project, "prompts.jsonl", "prompts-jsonl")
    error = refused(project, "prompts.jsonl", "prompts-jsonl")
    assert "already imported" in error.reason


def test_plain_text_becomes_corpus_documents(project):
    batch = run(project, "corpus.txt", "text")
    assert batch.counts["documents"] == 2
    assert list(CorpusText.objects.order_by("id").values_list("text", flat=True)) == [
        "Seven plus five is twelve.\nTwelve minus five is seven.",
        "Three times four is twelve.",
    ]


def test_command_reports_counts_and_refusals(project, capsys):
    call_command("import_data", str(FIXTURES / "pairs.jsonl"), "--project", str(project.id), "--format", "pairs")
    assert "3 rankings" in capsys.readouterr().out
    with pytest.raises(CommandError, match="line 3: chosen and rejected do not share their prompt"):
        call_command("import_data", str(FIXTURES / "hh-no-shared-prompt.jsonl"), "--project", str(project.id), "--format", "pairs")


def upload_by_api(api, project, name, format, **fields):
    with (FIXTURES / name).open("rb") as stream:
        return api.post(f"/api/projects/{project.id}/imports/", {"format": format, "file": stream, **fields},
                        format="multipart")


def job_run(api, project, answer) -> dict:
    """Run the import job an upload queued, as the worker's task does, and return the job as the API shows it."""
    assert answer.status_code == 202, answer.content
    job = answer.json()
    assert job["status"] == "queued" and job["bytes_total"] == job["bytes_total"] > 0 and job["bytes_done"] == 0
    imports.import_execute(job_id=job["id"])
    return api.get(f"/api/projects/{project.id}/imports/jobs/{job['id']}/").json()


def test_api_import_is_for_admins_and_runs_as_a_job(api_as, owner, member, outsider, project):
    assert upload_by_api(api_as(member), project, "prompts.jsonl", "prompts-jsonl").status_code == 403
    assert upload_by_api(api_as(outsider), project, "prompts.jsonl", "prompts-jsonl").status_code == 404
    api = api_as(owner)
    # A bad line refuses the file in the worker: the job fails naming it, nothing is written, the upload is gone.
    bad = job_run(api, project, upload_by_api(api, project, "prompts-bad-json.jsonl", "prompts-jsonl"))
    assert bad["status"] == "failed" and bad["error"].startswith("line 3: not valid JSON") and bad["line"] == 3
    assert bad["batch"] is None and not Message.objects.exists()
    assert not list(settings.IMPORT_STORE.rglob("*.upload"))
    good = job_run(api, project, upload_by_api(api, project, "prompts.jsonl", "prompts-jsonl", license="cc-by-4.0"))
    assert good["status"] == "succeeded" and good["bytes_done"] == good["bytes_total"] and good["error"] == ""
    assert good["batch"]["counts"]["messages"] == 3 and good["batch"]["license"] == "cc-by-4.0"
    assert not list(settings.IMPORT_STORE.rglob("*.upload"))
    # What cannot be imported is refused at once, before a worker: the same file, a licence that is no id.
    again = upload_by_api(api, project, "prompts.jsonl", "prompts-jsonl")
    assert again.status_code == 400 and "already imported" in again.json()["file"][0]
    odd = upload_by_api(api, project, "prompts.csv", "prompts-csv", license="CC BY 4.0")
    assert odd.status_code == 400 and "'CC BY 4.0' is not a licence id" in odd.json()["file"][0]
    assert ImportJob.objects.count() == 2 and not list(settings.IMPORT_STORE.rglob("*.upload"))
    jobs = f"/api/projects/{project.id}/imports/jobs/"
    assert api_as(member).get(jobs).status_code == 403 and api_as(outsider).get(jobs).status_code == 404
    assert api_as(member).get(f"{jobs}{good['id']}/").status_code == 403
    assert [job["status"] for job in api.get(jobs).json()["results"]] == ["succeeded", "failed"]
    other = account_services.project_create(name="Other", created_by=owner)
    assert api.get(f"/api/projects/{other.id}/imports/jobs/{good['id']}/").status_code == 404


def test_oasst_messages_rebuild_trees_without_deleted_ones_and_with_their_ranking(project):
    batch = run(project, "oasst-messages.jsonl", "oasst-messages")
    assert batch.counts["conversations"] == 2 and batch.counts["rankings"] == 1
    assert "spam spam" not in texts(project) and "why spam?" not in texts(project)
    hello = Message.objects.get(text="Hello there!")
    assert hello.parent.text == "Say hello."  # the child came first in the file
    ranking = Ranking.objects.get()
    ordered = [[Message.objects.get(pk=pk).text for pk in tier] for tier in ranking.tiers]
    assert ordered == [["12 / 4 = 3"], ["12 / 4 = 4"], ["three"]]
    assert ranking.external_annotator.startswith("oasst:") and ranking.annotator is None
    synthetic = Message.objects.get(text="three")
    assert synthetic.origin["model_name"] == "oasst-sft-1" and synthetic.origin["source_id"] == "r3"
    assert synthetic.origin["source_user"].startswith("oasst:") and "u-d" not in str(synthetic.origin)
    assert Message.objects.get(text="And 12 / 3?").depth == 2


def test_oasst_trees_give_the_same_tree(project, make_user, owner):
    from annotate.services import accounts as account_services

    run(project, "oasst-trees.jsonl", "oasst-trees")
    other = account_services.project_create(name="Other", created_by=owner)
    run(other, "oasst-messages.jsonl", "oasst-messages")
    shape = lambda p: sorted(Message.objects.filter(project=p, text__contains="12").values_list("depth", "role", "text"))
    assert shape(project) == shape(other)
    assert Ranking.objects.filter(candidate_set__project=project).get().tiers != []


def test_oasst_broken_reference_names_its_line(project):
    error = refused(project, "oasst-messages-broken-parent.jsonl", "oasst-messages")
    assert error.line == 4 and "parent_id nope, which is not in the file" in error.reason


def cornell_zip(tmp_path, conversations="movie_conversations.txt"):
    import zipfile

    target = tmp_path / "cornell.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.write(FIXTURES / "cornell" / "movie_lines.txt", "cornell movie-dialogs corpus/movie_lines.txt")
        archive.write(FIXTURES / "cornell" / conversations, "cornell movie-dialogs corpus/movie_conversations.txt")
    return target


def test_cornell_conversations_become_chats_from_latin1(project, tmp_path):
    with cornell_zip(tmp_path).open("rb") as stream:
        batch = import_run(project=project, format="cornell", stream=stream)
    assert batch.counts["conversations"] == 4
    cafe = Message.objects.get(text__startswith="Café")
    assert cafe.role == "user" and cafe.children.get().text == "Coming right up."
    joined = Message.objects.get(text__startswith="Okay -- you're gonna")
    assert joined.role == "assistant" and joined.text.count("\n") == 2 and joined.parent.text == "No"


def test_cornell_missing_line_is_refused_by_line(project, tmp_path):
    with cornell_zip(tmp_path, "movie_conversations_broken.txt").open("rb") as stream:
        with pytest.raises(ImportRefused) as error:
            import_run(project=project, format="cornell", stream=stream)
    assert error.value.line == 5 and "line L1 is not in movie_lines.txt" in error.value.reason
    assert not Message.objects.exists()


def test_cornell_from_a_folder_with_the_command(project, capsys):
    call_command("import_data", str(FIXTURES / "cornell"), "--project", str(project.id), "--format", "cornell")
    assert "4 conversations" in capsys.readouterr().out


def write_lines(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def path_of(message):
    turns = []
    while message is not None:
        turns.append((message.role, message.text, message.metadata))
        message = message.parent
    return turns[::-1]


@pytest.mark.parametrize("format", ["messages", "sharegpt"])
def test_a_chat_file_may_mix_both_forms_line_by_line_and_keeps_system_messages(project, tmp_path, format):
    mixed = write_lines(tmp_path / "chats.jsonl", [
        {"conversations": [{"from": "system", "value": "Answer in French."}, {"from": "human", "value": "Hello"},
                           {"from": "gpt", "value": "Bonjour"}]},
        {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"},
                      {"role": "assistant", "content": "Hi."}, {"role": "system", "content": "Now be verbose."},
                      {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Very well."}]},
        {"messages": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hey"}]},
    ])
    with mixed.open("rb") as stream:
        batch = import_run(project=project, format=format, stream=stream)
    # Three roots "Hello": the same words under another system prompt (or none) are another conversation.
    assert batch.counts["conversations"] == 3 and batch.counts["messages"] == 8
    assert path_of(Message.objects.get(text="Bonjour")) == [
        ("user", "Hello", {"system": "Answer in French."}), ("assistant", "Bonjour", {})]
    assert path_of(Message.objects.get(text="Very well.")) == [
        ("user", "Hello", {"system": "Be terse."}), ("assistant", "Hi.", {}),
        ("user", "How are you?", {"system": "Now be verbose."}), ("assistant", "Very well.", {})]
    assert path_of(Message.objects.get(text="Hey"))[0] == ("user", "Hello", {})


def test_a_chat_line_in_neither_form_is_refused_by_line(project, tmp_path):
    bad = write_lines(tmp_path / "chats.jsonl", [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"conversations": [{"from": "narrator", "value": "Once"}]},
    ])
    before = database_rows()
    with bad.open("rb") as stream, pytest.raises(ImportRefused) as error:
        import_run(project=project, format="messages", stream=stream)
    assert error.value.line == 2 and "from 'narrator'" in error.value.reason
    assert database_rows() == before


def test_cornell_turns_keep_the_movie_character_and_line_ids(project, tmp_path):
    with cornell_zip(tmp_path).open("rb") as stream:
        import_run(project=project, format="cornell", stream=stream)
    they = Message.objects.get(text="They do to!")
    assert they.metadata == {"movie_id": "m0", "character_id": "u2", "speaker": "CAMERON", "line_ids": ["L1044"]}
    joined = Message.objects.get(text__startswith="Okay -- you're gonna")
    assert len(joined.metadata["line_ids"]) == 3 and joined.metadata["movie_id"] == "m0"


def test_prompt_files_keep_their_other_columns_and_fields(project, tmp_path):
    run(project, "prompts.csv", "prompts-csv")
    assert Message.objects.get(text="What is 7 * 6?").metadata == {"id": "1"}
    lines = write_lines(tmp_path / "prompts.jsonl", [{"prompt": "Name a prime.", "category": "maths", "id": 7}])
    with lines.open("rb") as stream:
        import_run(project=project, format="prompts-jsonl", stream=stream)
    assert Message.objects.get(text="Name a prime.").metadata == {"category": "maths", "id": 7}


def sft_replies(project, **options):
    from training.exporters.rows import sft_rows

    return sorted(row["messages"][-1]["content"] for _, row in sft_rows(project, **options))


def test_a_trusted_import_gives_demonstrations_but_never_the_rejected_side_of_a_pair(project, owner):
    run(project, "messages.jsonl", "messages")
    # Untrusted, imported replies are no demonstrations: the default export finds none.
    assert sft_replies(project) == []
    with (FIXTURES / "pairs.jsonl").open("rb") as stream:
        batch = import_run(project=project, format="pairs", stream=stream, trusted=True)
    chosen = ["7", "3 + 4 = 7.", "No, 9 = 3 * 3."]
    rejected = {Message.objects.get(pk=r.tiers[1][0]).text for r in Ranking.objects.all()}
    assert batch.trusted and batch.counts["demonstrations"] == 3
    assert sft_replies(project) == sorted(chosen)
    # `all` takes every reply but the losing side of an imported pair.
    everything = sft_replies(project, demonstrations="all")
    assert not rejected & set(everything)
    assert everything == sorted(chosen + ["10", "30", "tac"])


def test_the_sft_export_puts_a_kept_system_message_back_before_its_turn(project, tmp_path):
    chat = write_lines(tmp_path / "chats.jsonl", [
        {"conversations": [{"from": "system", "value": "Be terse."}, {"from": "human", "value": "2 + 2?"},
                           {"from": "gpt", "value": "4"}]},
    ])
    with chat.open("rb") as stream:
        import_run(project=project, format="sharegpt", stream=stream, trusted=True)
    from training.exporters.rows import sft_rows

    [(_, row)] = list(sft_rows(project))
    assert row["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2 + 2?"},
                               {"role": "assistant", "content": "4"}]


def test_trusted_from_the_command_and_the_api_shows_in_the_import_list(api_as, owner, member, outsider, project, capsys):
    call_command("import_data", str(FIXTURES / "messages.jsonl"), "--project", str(project.id), "--format", "messages",
                 "--trusted")
    assert "3 demonstrations" in capsys.readouterr().out
    job = job_run(api_as(owner), project, upload_by_api(api_as(owner), project, "sharegpt.jsonl", "sharegpt"))
    assert job["status"] == "succeeded" and job["trusted"] is False and job["batch"]["trusted"] is False
    url = f"/api/projects/{project.id}/imports/list/"
    assert api_as(member).get(url).status_code == 403 and api_as(outsider).get(url).status_code == 404
    listed = api_as(owner).get(url).json()["results"]
    assert [(i["filename"], i["trusted"], i["counts"]["messages"]) for i in listed] == [
        ("sharegpt.jsonl", False, 5), ("messages.jsonl", True, 6)]
