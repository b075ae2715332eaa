"""The generation layer: the local transformers backend on tiny models built here, and the
OpenAI-compatible backend against a real `transformers serve` process on loopback."""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from training.generation import GenerationBackend, GenerationError, SamplingSettings, backend_for

# What the chat model is trained to answer, exactly, with an EOS after each answer.
ANSWERS = {
    "What is two plus two?": "Four.",
    "Name a colour.": "Blue.",
    "How many legs has a cat? Tell me please.": "A cat has four legs.",
}
GREEDY = SamplingSettings(temperature=0, max_new_tokens=40)


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run these tiny models on one thread: a second one only adds waiting between the two, many
    times slower on a machine that is busy with other work."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory) -> Path:
    """A one-layer model trained in a second or two to answer ANSWERS and then end its turn."""
    import torch

    from training.trainers.scratch import gpt_from_config, tokenizer_train

    folder = tmp_path_factory.mktemp("chat-model")
    tokenizer = tokenizer_train([f"{q} {a}" for q, a in ANSWERS.items()] * 10, vocab_size=300)
    torch.manual_seed(0)
    model = gpt_from_config(tokenizer, layers=1, heads=2, width=32, context=128)
    rows = [tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                          tokenize=True, return_dict=True)["input_ids"] for q, a in ANSWERS.items()]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    attention_mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row)
        attention_mask[i, :len(row)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(60):
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory) -> Path:
    """An untrained model whose vocabulary is mostly whole words, so that its babble has spaces
    (TextIteratorStreamer hands on text a word at a time)."""
    import torch

    from training.trainers.scratch import gpt_from_config, tokenizer_train

    folder = tmp_path_factory.mktemp("random-model")
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu"]
    words = [a + b for a in syllables for b in syllables]
    # Each word often enough to become one token with its leading space.
    tokenizer = tokenizer_train([" ".join(words[i:] + words[:i]) for i in range(50)], vocab_size=600)
    torch.manual_seed(0)
    gpt_from_config(tokenizer, layers=2, heads=2, width=64, context=512).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# Settings and arguments


def test_sampling_settings_are_checked_and_recorded_as_plain_values():
    settings = SamplingSettings(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=5)
    assert settings.as_dict() == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64, "seed": 5}
    assert json.loads(json.dumps(settings.as_dict())) == settings.as_dict()
    for bad in ({"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"max_new_tokens": 0}, {"seed": -1},
                {"seed": 1.5}, {"max_new_tokens": True}):
        with pytest.raises(ValueError):
            SamplingSettings(**bad)


def test_backend_for_refuses_what_it_cannot_build(tmp_path):
    assert isinstance(backend_for(model_dir=str(tmp_path)), GenerationBackend)
    assert isinstance(backend_for(kind="openai", url="http://127.0.0.1:1"), GenerationBackend)
    with pytest.raises(ValueError, match="unknown backend kind 'vllm'"):
        backend_for(kind="vllm", url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="needs model_dir"):
        backend_for(kind="transformers")
    with pytest.raises(ValueError, match="needs url"):
        backend_for(kind="openai", model="m")
    with pytest.raises(ValueError, match="unknown option.*batchsize"):
        backend_for(model_dir=str(tmp_path), batchsize=4)
    with pytest.raises(ValueError, match="http"):
        backend_for(kind="openai", url="127.0.0.1:8000")


def test_conversations_must_end_with_a_user_turn_before_anything_loads(tmp_path):
    backend = backend_for(model_dir=str(tmp_path / "never-loaded"))
    with pytest.raises(ValueError, match="conversation 1: the last message must be a user turn"):
        backend.generate([ask("Hi"), [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]],
                         n=1, settings=GREEDY)
    with pytest.raises(ValueError, match="n must be"):
        backend.generate([ask("Hi")], n=0, settings=GREEDY)
    with pytest.raises(ValueError, match="role"):
        list(backend.stream([{"role": "robot", "content": "Hi"}], settings=GREEDY))


def test_a_missing_model_directory_is_named(tmp_path):
    backend = backend_for(model_dir=str(tmp_path / "gone"))
    with pytest.raises(GenerationError, match="gone is not a model directory"):
        backend.generate([ask("Hi")], n=1, settings=GREEDY)


# The local backend


def test_cpu_nucleus_sampler_draws_from_the_distribution_transformers_would():
    import torch
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    from training.generation.local import NucleusSampler

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    draws = 400
    # Flat rows (a nucleus of thousands: sorted in full), middling (top 1024), peaked (top 128), and no top_p.
    for spread, temperature, top_p in ((0.3, 1.0, 0.95), (3.0, 0.7, 0.9), (10.0, 1.5, 0.5), (6.0, 1.0, 1.0)):
        scores = torch.randn(4, 8192, generator=generator) * spread
        warped = TemperatureLogitsWarper(temperature)(None, scores.clone())
        expected = (TopPLogitsWarper(top_p)(None, warped) if top_p < 1 else warped).softmax(dim=-1)
        tokens = NucleusSampler(temperature, top_p).sample(scores.repeat(draws, 1)).view(draws, 4)
        for row in range(4):
            # Only tokens transformers could draw, the likeliest about as often as transformers would.
            assert expected[row, tokens[:, row]].min() > 0, (spread, temperature, top_p)
            likeliest = expected[row].argmax()
            frequency = (tokens[:, row] == likeliest).float().mean()
            assert abs(frequency - expected[row, likeliest]) < 0.08, (spread, temperature, top_p, frequency)
    # As a processor: only the drawn token is left for generate's argmax.
    scores = torch.randn(3, 8192, generator=generator) * 5
    out = NucleusSampler(1.0, 0.9)(None, scores)
    assert torch.isfinite(out).sum(dim=-1).tolist() == [1, 1, 1]


@pytest.mark.slow
def test_local_greedy_replies_are_the_trained_answers_and_stop_at_eos(chat_model_dir):
    questions = list(ANSWERS)
    # Batches mixing prompts of different lengths (left padding) answer as one prompt at a time does.
    batched = backend_for(model_dir=str(chat_model_dir), batch_size=8)
    one_by_one = backend_for(model_dir=str(chat_model_dir), batch_size=1)
    replies = batched.generate([ask(q) for q in questions], n=2, settings=GREEDY)
    assert replies == [[ANSWERS[q]] * 2 for q in questions]
    assert one_by_one.generate([ask(q) for q in questions], n=1, settings=GREEDY) == [[ANSWERS[q]] for q in questions]
    # The GPU's way (static cache, prompts padded to 64 tokens, batches filled to a power of two) on the CPU.
    static = backend_for(model_dir=str(chat_model_dir), compile=True, batch_size=8)
    assert static.generate([ask(q) for q in questions], n=1, settings=GREEDY) == [[ANSWERS[q]] for q in questions]
    # Stopped at EOS, well short of the 40 new tokens allowed, with no special token in the text.
    assert all("<|" not in reply for reply in sum(replies, []))
    assert batched.describe() == {"backend": "transformers", "model": str(chat_model_dir), "device": "cpu",
                                  "dtype": "float32", "batch_size": 8}


@pytest.mark.slow
def test_local_sampling_gives_n_replies_per_conversation_the_same_for_a_seed(chat_model_dir):
    backend = backend_for(model_dir=str(chat_model_dir), batch_size=4)  # 3 x 5 rows: four batches
    conversations = [ask(q) for q in ANSWERS]
    hot = SamplingSettings(temperature=3.0, top_p=1.0, max_new_tokens=12, seed=11)
    replies = backend.generate(conversations, n=5, settings=hot)
    assert [len(samples) for samples in replies] == [5, 5, 5]
    assert all(isinstance(reply, str) for reply in sum(replies, []))
    assert len(set(sum(replies, []))) > 5  # sampled, not the same answer fifteen times
    assert backend.generate(conversations, n=5, settings=hot) == replies
    assert backend.generate(conversations, n=5, settings=SamplingSettings(temperature=3.0, max_new_tokens=12,
                                                                          seed=12)) != replies


@pytest.mark.slow
def test_growing_kv_cache_generates_what_transformers_cache_does(random_model_dir):
    import torch

    from training.generation.local import growing_cache, model_load, prompt_batch

    loaded = model_load(random_model_dir, device="cpu")
    backend = backend_for(model_dir=str(random_model_dir))
    prompts = backend._prompt_ids(loaded, [ask("ka"), ask("lo mi ne su ta ri po de gu " * 3)], GREEDY)
    input_ids, attention_mask = prompt_batch(loaded, prompts)
    settings = {"max_new_tokens": 150, "min_new_tokens": 150, "do_sample": False}  # past two regrowths
    with torch.inference_mode():
        ours = loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                     past_key_values=growing_cache(loaded.model.config), **settings)
        theirs = loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
    assert torch.equal(ours, theirs)


@pytest.mark.slow
def test_local_stream_yields_the_first_chunk_well_before_the_last(random_model_dir):
    # min_new_tokens: the untrained model may not end its turn before 120 tokens.
    backend = backend_for(model_dir=str(random_model_dir), min_new_tokens=120)
    backend.load()
    settings = SamplingSettings(temperature=1.0, max_new_tokens=120, seed=3)
    started = time.monotonic()
    arrivals = []
    for chunk in backend.stream(ask("kalo mine"), settings=settings):
        arrivals.append((time.monotonic() - started, chunk))
    first, last = arrivals[0][0], arrivals[-1][0]
    assert len(arrivals) > 10
    assert first < last / 4, f"first chunk after {first:.2f}s, last after {last:.2f}s"
    # The same reply as generate() would give for this seed, only in pieces.
    assert "".join(chunk for _, chunk in arrivals) == backend.generate([ask("kalo mine")], n=1,
                                                                       settings=settings)[0][0]


@pytest.mark.slow
def test_local_stream_closed_early_stops_generating(random_model_dir):
    backend = backend_for(model_dir=str(random_model_dir), min_new_tokens=400)
    loaded = backend.load()
    chunks = backend.stream(ask("suta"), settings=SamplingSettings(max_new_tokens=400, seed=1))
    next(chunks)
    chunks.close()  # what a chat page that went away does
    assert not loaded.lock.locked()


# The same loop for prompts that are token ids (the trainers' evaluation)


def prompt_ids(tokenizer, questions: list[str]) -> list[list[int]]:
    return [tokenizer.apply_chat_template(ask(q), tokenize=True, add_generation_prompt=True, return_dict=False)
            for q in questions]


@pytest.mark.slow
def test_generate_ids_answers_in_the_order_given_each_reply_ending_with_its_eos(chat_model_dir):
    from training.generation.local import SAVED, generate_ids, model_load

    loaded = model_load(chat_model_dir, dtype=SAVED, keep=False)
    tokenizer = loaded.tokenizer
    questions = list(ANSWERS)[::-1]  # longest first: not the order of lengths the backend sorts into
    replies = generate_ids(loaded, prompt_ids(tokenizer, questions), settings=GREEDY, batch_size=2)
    assert [tokenizer.decode(r, skip_special_tokens=True) for r in replies] == [ANSWERS[q] for q in questions]
    # The EOS is part of the reply (PPO's KL counts it) and nothing follows it.
    assert all(r.index(tokenizer.eos_token_id) == len(r) - 1 for r in replies)
    hot = SamplingSettings(temperature=3.0, max_new_tokens=12, seed=4)
    prompts = prompt_ids(tokenizer, questions * 3)
    sampled = generate_ids(loaded, prompts, settings=hot, batch_size=4)
    assert len(set(map(tuple, sampled))) > 3
    assert generate_ids(loaded, prompts, settings=hot, batch_size=4) == sampled


@pytest.mark.slow
def test_model_load_keeps_a_model_unless_told_not_to_and_can_load_the_saved_dtype(random_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.generation.local import SAVED, model_load

    kept = model_load(random_model_dir, device="cpu")
    assert model_load(random_model_dir, device="cpu") is kept
    assert model_load(random_model_dir, device="cpu", keep=False) is kept  # already kept: reused
    loose = model_load(random_model_dir, device="cpu", dtype=SAVED, keep=False)
    assert loose is not kept and model_load(random_model_dir, device="cpu", dtype=SAVED, keep=False) is not loose
    AutoModelForCausalLM.from_pretrained(random_model_dir, dtype=torch.bfloat16).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(random_model_dir).save_pretrained(tmp_path)
    assert model_load(tmp_path, device="cpu", dtype=SAVED, keep=False).dtype == torch.bfloat16
    assert model_load(tmp_path, device="cpu", keep=False).dtype == torch.float32


@pytest.mark.slow
def test_sft_evaluation_generates_its_greedy_replies_through_this_path(chat_model_dir, tmp_path):
    from training.trainers.evaluate import evaluate_sft

    held_out = tmp_path / "sft-eval.jsonl"
    held_out.write_text("".join(json.dumps({"messages": ask(q) + [{"role": "assistant", "content": a}]}) + "\n"
                                for q, a in ANSWERS.items()))
    config = {"eval_max_rows": 10, "max_length": 128, "per_device_eval_batch_size": 2, "eval_max_new_tokens": 16}
    metrics = evaluate_sft(str(chat_model_dir), str(held_out), config)
    assert metrics["exact_match"] == 1.0 and metrics["generated_rows"] == len(ANSWERS)


# The OpenAI-compatible backend against a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_chat_model(chat_model_dir, tmp_path_factory):
    """`transformers serve` serving the chat model's directory on loopback, offline; yields its URL."""
    home = tmp_path_factory.mktemp("hf-home")
    # /v1/models scans the hub cache and fails with a 500 while that folder does not exist.
    (home / "hub").mkdir()
    port = free_port()
    log = open(home / "serve.log", "wb")
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "transformers.cli.transformers", "serve", str(chat_model_dir),
         "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"transformers serve exited with {server.returncode}: "
                            f"{(home / 'serve.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not answer within 120 s: {(home / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.mark.slow
def test_openai_backend_gets_the_trained_answers_from_transformers_serve(served_chat_model, chat_model_dir):
    # The server is pinned to the directory and knows the model by its path, as backend_for sends it.
    backend = backend_for(kind="openai", url=served_chat_model, model_dir=str(chat_model_dir))
    questions = list(ANSWERS)
    assert backend.generate([ask(q) for q in questions], n=1, settings=GREEDY) == [[ANSWERS[q]] for q in questions]
    assert backend.describe() == {"backend": "openai", "url": served_chat_model, "model": str(chat_model_dir)}
    assert requests.get(f"{served_chat_model}/v1/models", timeout=10).status_code == 200


@pytest.mark.slow
def test_openai_backend_samples_n_replies_from_a_server_that_ignores_n(served_chat_model, chat_model_dir):
    # transformers serve ignores n and samples only when told do_sample through its own field.
    backend = backend_for(kind="openai", url=f"{served_chat_model}/v1/", model_dir=str(chat_model_dir),
                          concurrency=1, extra_body={"generation_config": json.dumps({"do_sample": True})})
    hot = SamplingSettings(temperature=3.0, max_new_tokens=8, seed=21)
    conversations = [ask(q) for q in list(ANSWERS)[:2]]
    replies = backend.generate(conversations, n=3, settings=hot)
    assert backend.send_n is False  # learnt from the first answer: one choice where three were asked
    assert [len(samples) for samples in replies] == [3, 3]
    assert len(set(sum(replies, []))) > 2
    # One request at a time, each seeded: the server's random generator gives the same again.
    assert backend.generate(conversations, n=3, settings=hot) == replies


@pytest.mark.slow
def test_openai_backend_streams_server_sent_events(served_chat_model, chat_model_dir):
    backend = backend_for(kind="openai", url=served_chat_model, model_dir=str(chat_model_dir))
    question = "How many legs has a cat? Tell me please."
    chunks = list(backend.stream(ask(question), settings=GREEDY))
    assert len(chunks) > 1
    assert "".join(chunks) == ANSWERS[question]


class _GarbageHandler(http.server.BaseHTTPRequestHandler):
    bodies = {"/html/v1/chat/completions": (200, b"<html>It works!</html>"),
              "/shape/v1/chat/completions": (200, b'{"result": "no choices here"}'),
              "/broken/v1/chat/completions": (500, b"Traceback: /srv/secret/app.py"),
              # Two words of a reply, then the server gives up (as vLLM does when it runs out of memory).
              "/midway/v1/chat/completions": (200, b'data: {"choices": [{"index": 0, "delta": {"content": "Four"}}]}'
                                                   b'\n\ndata: {"error": {"message": "Traceback: /srv/secret"}}\n\n'),
              "/ok/v1/chat/completions": (200, b'{"choices": [{"index": 0, "message": {"role": "assistant", '
                                               b'"content": "Four."}}]}')}
    authorizations = []

    def do_POST(self):
        self.authorizations.append(self.headers.get("Authorization"))
        status, body = self.bodies.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_openai_backend_errors_name_the_url():
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GenerationError, match=f"cannot reach {down}/v1/chat/completions"):
        backend_for(kind="openai", url=down, model="m").generate([ask("Hi")], n=1, settings=GREEDY)
    with pytest.raises(GenerationError, match=f"cannot reach {down}/v1/models"):
        backend_for(kind="openai", url=down).generate([ask("Hi")], n=1, settings=GREEDY)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GarbageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for path, message in (("html", "not JSON"), ("shape", "not a chat completion"), ("broken", "answered 500")):
            backend = backend_for(kind="openai", url=f"{base}/{path}", model="m")
            with pytest.raises(GenerationError, match=f"{base}/{path}/v1/chat/completions .*{message}") as error:
                backend.generate([ask("Hi")], n=1, settings=GREEDY)
            # What the server answered is its own text, never shown as ours.
            assert _GarbageHandler.bodies[f"/{path}/v1/chat/completions"][1].decode() not in str(error.value)
        with pytest.raises(GenerationError, match="answered no server-sent events"):
            list(backend_for(kind="openai", url=f"{base}/html", model="m").stream(ask("Hi"), settings=GREEDY))
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def garbage_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GarbageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _GarbageHandler.authorizations.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_openai_backend_stream_that_fails_midway_says_so_after_the_text_it_sent(garbage_server):
    chunks = []
    with pytest.raises(GenerationError, match=f"{garbage_server}/midway/v1/chat/completions failed while streaming$"):
        for chunk in backend_for(kind="openai", url=f"{garbage_server}/midway", model="m").stream(ask("Hi"),
                                                                                              settings=GREEDY):
            chunks.append(chunk)
    assert chunks == ["Four"]


def test_openai_backend_sends_only_its_own_key(garbage_server, monkeypatch):
    # This process's key is for api.openai.com; the server at the URL is somebody else's.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-api-openai-com")
    for api_key in (None, "served-key"):
        backend = backend_for(kind="openai", url=f"{garbage_server}/ok", model="m", api_key=api_key)
        assert backend.generate([ask("Hi")], n=1, settings=GREEDY) == [["Four."]]
    assert "sk-for-api-openai-com" not in str(_GarbageHandler.authorizations)
    assert _GarbageHandler.authorizations[-1] == "Bearer served-key"
