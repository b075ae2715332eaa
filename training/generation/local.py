"""Replies from a model directory on this machine, with transformers' `generate`.

Prompts go through the tokenizer's chat template (add_generation_prompt=True), are left-padded and
generated many at a time, and only the new tokens are decoded, up to the first EOS. On a GPU the
model runs in bf16 with a static KV cache, which lets `generate` compile the decoding step, in
batches of 256 rows, and samples with transformers' own warpers. On a CPU it runs in float32 in
batches of 32, with a KV cache that grows without copying itself at every step (GrowingLayer) and
a sampler that finds the nucleus without sorting the vocabulary (NucleusSampler).

    backend = TransformersBackend("/store/models/sft-3")
    replies = backend.generate([[{"role": "user", "content": "Hi"}]], n=4, settings=SamplingSettings(seed=7))

The one loop behind it, for prompts that are already token ids (the trainers' evaluation, the demo's
hidden check):

    loaded = model_load("/store/models/sft-3", dtype=SAVED, keep=False)
    reply_ids = generate_ids(loaded, prompt_ids, settings=SamplingSettings(temperature=0), batch_size=8)
"""

import collections
import copy
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)
from transformers.cache_utils import DynamicLayer

from training.trainers import adapters

from .base import GenerationError, SamplingSettings, check_conversations

AUTO = "auto"
# model_load's dtype for the one the directory records, as training saved it (transformers' own "auto").
SAVED = "saved"
# Rows per generate() call. A CPU stops gaining from bigger batches long before a GPU does.
DEFAULT_BATCH_SIZE = {"cpu": 32, "cuda": 256}
# On a GPU, prompts are padded to a multiple of this many tokens and batches to a power of two, so
# that the compiled decoding step sees few distinct shapes (each new shape compiles again).
CUDA_PAD_MULTIPLE = 64
# Models kept loaded per process; the least recently used one beyond this is dropped.
MAX_LOADED = 4


@dataclass
class LoadedModel:
    """A model and tokenizer loaded once per process, and the lock its generate calls take.

    One generate call at a time per model: concurrent calls would only contend for the same cores
    (or GPU), the static cache is not safe to share, and a seeded call reseeds torch's process-wide
    random generator, which another call running in between would disturb.
    """

    model: object
    tokenizer: object
    device: str
    dtype: torch.dtype
    context: int | None
    lock: threading.Lock


_loaded: "collections.OrderedDict[tuple, LoadedModel]" = collections.OrderedDict()
_loaded_lock = threading.Lock()


def resolve_device(device: str) -> str:
    if device == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == AUTO:
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, not {dtype!r}") from None


def model_load(model_dir: str | Path, *, device: str = AUTO, dtype: str | torch.dtype = AUTO,
               keep: bool = True) -> LoadedModel:
    """Return the model in `model_dir` on `device`, loading it only the first time in this process.

    dtype: SAVED for the dtype the directory records, else as resolve_dtype reads it. keep=False
    loads a model not loaded yet without keeping it, so that it is freed once the caller drops it (a
    training process evaluating models one after another should hold one at a time); one already
    kept is still reused. A directory saved again (its config.json, or an adapter's adapter_config.json,
    rewritten) is loaded afresh. An adapter version loads as its base with the adapter merged in.
    """
    path = Path(model_dir).resolve()
    # A LoRA version is peft's adapter files beside the tokenizer; its base is loaded first and the adapter
    # merged into it (training.trainers.adapters), which generates as fast as a whole model.
    marker = path / (adapters.ADAPTER_CONFIG if adapters.is_adapter(path) else "config.json")
    if not marker.is_file():
        raise GenerationError(f"{model_dir} is not a model directory (no config.json or {adapters.ADAPTER_CONFIG})")
    device = resolve_device(device)
    load_dtype = AUTO if dtype == SAVED else resolve_dtype(dtype, device)  # transformers' "auto": the saved one
    key = (str(path), device, str(load_dtype), marker.stat().st_mtime_ns)
    with _loaded_lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        try:
            # local_files_only: a model is a directory on disk; nothing is ever fetched from a hub.
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = adapters.pretrained(AutoModelForCausalLM, path, local_files_only=True, dtype=load_dtype,
                                        attn_implementation="sdpa")
        except (OSError, ValueError, KeyError) as exc:  # FileNotFoundError too: an adapter whose base is gone
            raise GenerationError(f"cannot load a causal language model from {model_dir}: {exc}") from exc
        if not tokenizer.chat_template:
            raise GenerationError(f"the tokenizer in {model_dir} has no chat template")
        if tokenizer.eos_token_id is None:
            raise GenerationError(f"the tokenizer in {model_dir} has no EOS token, so replies would never end")
        model.to(device).eval()
        context = getattr(model.config, "max_position_embeddings", None)
        loaded = LoadedModel(model=model, tokenizer=tokenizer, device=device, dtype=model.dtype, context=context,
                             lock=threading.Lock())
        if keep:
            _loaded[key] = loaded
            while len(_loaded) > MAX_LOADED:
                _loaded.popitem(last=False)
        return loaded


class NucleusSampler(LogitsProcessor):
    """Sample each row's next token with temperature and top_p (nucleus sampling), and return scores in
    which only that token is finite, so that generate's greedy argmax takes it.

    Why not transformers' own sampling, on a CPU: it sorts every row's whole vocabulary at every step
    (a third of a decoding step at batch 32 and an 8k vocabulary) and torch.multinomial draws a random
    number per vocabulary entry (another eighth). A nucleus is mostly tens to hundreds of tokens, so
    each row's top 128, then top 1024, candidates are tried first, and a row is sorted in full only when
    its candidates fall short of top_p; the token is then drawn by inverse CDF over the nucleus. The
    distribution is the same as transformers' TemperatureLogitsWarper + TopPLogitsWarper + multinomial;
    the random draws are not, so a seed gives other replies than with do_sample.
    """

    def __init__(self, temperature: float, top_p: float, candidates: tuple[int, ...] = (128, 1024)):
        self.temperature = temperature
        self.top_p = top_p
        self.candidates = candidates

    def __call__(self, input_ids, scores):
        return torch.full_like(scores, -float("inf")).scatter_(-1, self.sample(scores).unsqueeze(-1), 0.0)

    def sample(self, scores):
        """Return one token id per row of `scores`."""
        probs = (scores.float() / self.temperature).softmax(dim=-1)
        vocabulary = probs.shape[-1]
        tokens = torch.zeros(probs.shape[0], dtype=torch.long, device=probs.device)
        rows = torch.arange(probs.shape[0], device=probs.device)  # rows whose nucleus is not found yet
        tiers = [k for k in self.candidates if k < vocabulary] if self.top_p < 1.0 else []
        for k in (*tiers, vocabulary):
            pending = probs if len(rows) == probs.shape[0] else probs[rows]
            if k < vocabulary:
                values, indices = pending.topk(k, dim=-1)  # descending
                found = values.sum(dim=-1) >= self.top_p
                values, indices, done = values[found], indices[found], rows[found]
            elif self.top_p < 1.0:
                values, indices = pending.sort(dim=-1, descending=True)
                done = rows
            else:  # no nucleus to find: draw from the whole distribution, in vocabulary order
                values, indices, done = pending, None, rows
            if self.top_p < 1.0:
                # A token is in the nucleus while the mass before it is short of top_p.
                values = values * ((values.cumsum(dim=-1) - values) < self.top_p)
            cdf = values.cumsum(dim=-1)
            # right=True: the first entry whose cdf exceeds the draw, so never a token of probability 0.
            draws = torch.rand(len(done), 1, device=probs.device) * cdf[:, -1:]
            drawn = torch.searchsorted(cdf, draws, right=True).squeeze(-1)
            # A draw that rounds up to the total falls past the end: take the most likely token.
            drawn = torch.where(drawn >= values.shape[-1], values.argmax(dim=-1), drawn)
            tokens[done] = drawn if indices is None else indices.gather(-1, drawn.unsqueeze(-1)).squeeze(-1)
            if k < vocabulary:
                rows = rows[~found]
                if not len(rows):
                    break
        return tokens


class GrowingLayer(DynamicLayer):
    """A dynamic KV cache layer that appends into a buffer of doubling capacity.

    transformers' DynamicLayer concatenates the whole cache with each new token, copying it at every
    step: a fifth of a CPU decoding step at batch 32. Attention reads a view of the filled part.
    Only appending is supported (no beam search, no cropping), which is all generate does here.
    """

    def lazy_initialization(self, key_states, value_states):
        super().lazy_initialization(key_states, value_states)
        self.length = 0
        self.key_buffer = self.value_buffer = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self.key_buffer is None or end > self.key_buffer.shape[-2]:
            capacity = max(2 * end, 64)
            key_buffer = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
            value_buffer = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
            if self.length:
                key_buffer[..., :self.length, :] = self.keys
                value_buffer[..., :self.length, :] = self.values
            self.key_buffer, self.value_buffer = key_buffer, value_buffer
        self.key_buffer[..., self.length:end, :] = key_states
        self.value_buffer[..., self.length:end, :] = value_states
        self.length = end
        self.keys = self.key_buffer[..., :end, :]
        self.values = self.value_buffer[..., :end, :]
        return self.keys, self.values


def growing_cache(config) -> DynamicCache | None:
    """Return an empty DynamicCache of GrowingLayers for `config`'s model, or None (transformers'
    default) where the model's cache has layers of other kinds (sliding windows, linear attention)."""
    cache = DynamicCache(config=config)
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


class _StopWhenSet(StoppingCriteria):
    """Stop every row once `event` is set: the reader of a stream went away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def generation_config(loaded: LoadedModel, settings: SamplingSettings, *, static_cache: bool = False,
                      min_new_tokens: int = 0) -> GenerationConfig:
    """Return the model's generation config with `settings` applied, for generate_ids or a stream."""
    tokenizer = loaded.tokenizer
    config = copy.deepcopy(loaded.model.generation_config)
    config.max_new_tokens = settings.max_new_tokens
    config.max_length = None
    config.min_new_tokens = min(min_new_tokens, settings.max_new_tokens) or None
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = pad_id(loaded)
    config.num_beams = 1
    # On a CPU, logits_processors() samples (NucleusSampler) and generate runs greedy.
    config.do_sample = loaded.device.startswith("cuda") and not settings.greedy
    if config.do_sample:
        # top_k=0: transformers would otherwise apply top_k=50, which the recorded settings do not say.
        config.temperature, config.top_p, config.top_k = float(settings.temperature), float(settings.top_p), 0
    else:
        config.temperature = config.top_p = config.top_k = None
    config.cache_implementation = "static" if static_cache else None
    return config


def logits_processors(loaded: LoadedModel, settings: SamplingSettings) -> LogitsProcessorList:
    """Return the processors that sample on a CPU (NucleusSampler); none for greedy or a GPU."""
    # A GPU sorts a batch's vocabularies in microseconds; the rows found there would only add a sync.
    if settings.greedy or loaded.device.startswith("cuda"):
        return LogitsProcessorList()
    return LogitsProcessorList([NucleusSampler(float(settings.temperature), float(settings.top_p))])


def pad_id(loaded: LoadedModel) -> int:
    """Return the token prompts are padded with: the pad token, else EOS (left of a prompt, masked out)."""
    tokenizer = loaded.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def prompt_batch(loaded: LoadedModel, prompts: list[list[int]], *, pad_multiple: int = 1):
    """Return left-padded input ids and attention mask on the model's device."""
    width = max(len(p) for p in prompts)
    width = -(-width // pad_multiple) * pad_multiple
    input_ids = torch.full((len(prompts), width), pad_id(loaded), dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt):] = 1
    return input_ids.to(loaded.device), attention_mask.to(loaded.device)


def generate_ids(loaded: LoadedModel, prompts: list[list[int]], *, settings: SamplingSettings, batch_size: int,
                 compile: bool = False, min_new_tokens: int = 0) -> list[list[int]]:
    """Return each prompt's reply as token ids, in the order given, `batch_size` prompts per generate call.

    A reply runs up to and including its first EOS; pad tokens at its end are dropped, and so the EOS
    too where pad is EOS: the tokens TRL's PPO counts as the reply. Greedy for temperature 0, else
    sampled; torch is seeded once before the first batch, so the same prompts, settings and
    batch_size give the same replies. compile: a static KV cache, with which `generate` compiles the
    decoding step, and few shapes for it (see _generate_batch).
    """
    if not prompts:
        return []
    config = generation_config(loaded, settings, static_cache=compile, min_new_tokens=min_new_tokens)
    processors = logits_processors(loaded, settings)
    replies = []
    with loaded.lock:
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        for start in range(0, len(prompts), batch_size):
            replies += _generate_batch(loaded, prompts[start:start + batch_size], config, processors,
                                       compile=compile, batch_size=batch_size)
    return replies


def _generate_batch(loaded: LoadedModel, prompts: list[list[int]], config: GenerationConfig,
                    processors: LogitsProcessorList, *, compile: bool, batch_size: int) -> list[list[int]]:
    rows = len(prompts)
    pad_multiple = 1
    if compile:
        # Few shapes for the compiled step: prompt widths in steps of 64, batches in powers of two
        # up to batch_size (filled with copies of the last prompt, whose replies are dropped).
        pad_multiple = CUDA_PAD_MULTIPLE
        size = min(batch_size, 1 << (rows - 1).bit_length())
        prompts = prompts + [prompts[-1]] * (size - rows)
        if loaded.context:
            pad_multiple = min(pad_multiple, max(1, loaded.context - config.max_new_tokens))
    input_ids, attention_mask = prompt_batch(loaded, prompts, pad_multiple=pad_multiple)
    if loaded.context and input_ids.shape[1] + config.max_new_tokens > loaded.context:
        # Padding to a multiple may not push a prompt past the context; pad only to the longest prompt.
        input_ids, attention_mask = prompt_batch(loaded, prompts, pad_multiple=1)
    with torch.inference_mode():
        cache = None if compile else growing_cache(loaded.model.config)
        output = loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                       generation_config=config, logits_processor=processors,
                                       past_key_values=cache)
    eos, pad = config.eos_token_id, config.pad_token_id
    replies = []
    for tokens in output[:rows, input_ids.shape[1]:].tolist():
        if eos in tokens:
            tokens = tokens[:tokens.index(eos) + 1]
        while tokens and tokens[-1] == pad:
            tokens.pop()
        replies.append(tokens)
    return replies


class TransformersBackend:
    """Generate with transformers on this machine's CPU or GPU.

    Options:
      device: "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
      batch_size: rows (prompt x sample) per generate call; default 32 on CPU, 256 on GPU.
      dtype: "auto" (bfloat16 on a GPU that has it, else float32), "float32", "bfloat16", "float16".
      compile: "auto" (on for CUDA) uses a static KV cache, with which `generate` compiles the
        decoding step; True or False to force. Streaming always uses the dynamic cache: one short
        request should not wait for a compilation.
      min_new_tokens: force every reply to at least this many tokens (benchmarks; 0 otherwise).
    """

    name = "transformers"

    def __init__(self, model_dir: str | Path, *, device: str = AUTO, batch_size: int | None = None,
                 dtype: str | torch.dtype = AUTO, compile: bool | str = AUTO, min_new_tokens: int = 0):
        self.model_dir = str(model_dir)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.cuda = cuda = self.device.startswith("cuda")
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE["cuda" if cuda else "cpu"]
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size!r}")
        self.compile = cuda if compile == AUTO else bool(compile)
        self.min_new_tokens = min_new_tokens

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_dir, "device": self.device,
                "dtype": str(self.dtype).removeprefix("torch."), "batch_size": self.batch_size}

    def load(self) -> LoadedModel:
        """Load the model now (generate and stream otherwise load it on first use)."""
        return model_load(self.model_dir, device=self.device, dtype=self.dtype)

    def generate(self, conversations: list[list[dict]], *, n: int, settings: SamplingSettings) -> list[list[str]]:
        """Return `n` replies per conversation; deterministic for a seed, given the same batch_size."""
        check_conversations(conversations, n=n)
        if not conversations:
            return []
        loaded = self.load()
        prompts = self._prompt_ids(loaded, conversations, settings)
        # Rows sorted by prompt length waste less on padding; each prompt's n samples are n rows.
        rows = [(index, sample) for index in sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
                for sample in range(n)]
        reply_ids = generate_ids(loaded, [prompts[index] for index, _ in rows], settings=settings,
                                 batch_size=self.batch_size, compile=self.compile, min_new_tokens=self.min_new_tokens)
        eos = loaded.tokenizer.eos_token_id
        replies: list[list[str | None]] = [[None] * n for _ in conversations]
        for (index, sample), tokens in zip(rows, reply_ids):
            replies[index][sample] = loaded.tokenizer.decode(tokens[:-1] if tokens[-1:] == [eos] else tokens,
                                                             skip_special_tokens=True)
        return replies

    def stream(self, conversation: list[dict], *, settings: SamplingSettings) -> Iterator[str]:
        """Yield the reply in chunks as it is generated (words: the streamer flushes at spaces)."""
        check_conversations([conversation], n=1)
        loaded = self.load()
        prompt = self._prompt_ids(loaded, [conversation], settings)[0]
        config = generation_config(loaded, settings, min_new_tokens=self.min_new_tokens)
        streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        failures = []

        def run():
            try:
                with loaded.lock:
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    input_ids, attention_mask = prompt_batch(loaded, [prompt])
                    with torch.inference_mode():
                        loaded.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                              generation_config=config, streamer=streamer,
                                              past_key_values=growing_cache(loaded.model.config),
                                              logits_processor=logits_processors(loaded, settings),
                                              stopping_criteria=StoppingCriteriaList([_StopWhenSet(stop)]))
            except BaseException as exc:  # handed to the reader, which would otherwise wait forever
                failures.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name=f"generate-stream {self.model_dir}", daemon=True)
        thread.start()
        try:
            for chunk in streamer:
                if chunk:
                    yield chunk
        finally:
            stop.set()
            thread.join()
        if failures:
            raise GenerationError(f"generation with {self.model_dir} failed: {failures[0]}") from failures[0]

    def _prompt_ids(self, loaded: LoadedModel, conversations, settings: SamplingSettings) -> list[list[int]]:
        """Return each conversation's prompt tokens, cut from the left to leave room for the reply."""
        tokenizer = loaded.tokenizer
        room = None
        if loaded.context:
            room = loaded.context - settings.max_new_tokens
            if room < 1:
                raise ValueError(f"max_new_tokens {settings.max_new_tokens} leaves no room for a prompt in the "
                                 f"{loaded.context}-token context of {self.model_dir}")
        prompts = []
        for conversation in conversations:
            messages = [{"role": m["role"], "content": m["content"]} for m in conversation]
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            # The oldest turns go first: the end of a conversation is what the reply answers.
            prompts.append(ids[-room:] if room else ids)
        return prompts
