"""Generate replies from a trained model: the one interface behind candidate generation, chat and the arena.

No Django here. Two backends implement `GenerationBackend` (training.models.Backend names them for a deployment):
  "transformers" (default): a model directory loaded on this machine (local.TransformersBackend);
  "openai": any OpenAI-compatible server by URL, for models too big for a worker (openai.OpenAICompatibleBackend).

    from training.generation import SamplingSettings, backend_for

    backend = backend_for(kind="transformers", model_dir="/store/models/sft-3")
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=128, seed=7)
    replies = backend.generate([[{"role": "user", "content": "What is 2 + 2?"}]], n=4, settings=settings)
    for chunk in backend.stream([{"role": "user", "content": "Hello"}], settings=settings):
        ...
    record = {**settings.as_dict(), **backend.describe()}

Errors: ValueError for bad arguments (a conversation not ending with a user turn, n < 1, unknown
options); GenerationError when the model cannot be loaded or the server is down or answers garbage.
"""

import inspect

from .base import GenerationBackend, GenerationError, SamplingSettings, conversation_problems
from .fence import ServerFence, ServerRefused

KINDS = ("transformers", "openai")

__all__ = ["KINDS", "GenerationBackend", "GenerationError", "SamplingSettings", "ServerFence", "ServerRefused",
           "backend_for", "conversation_problems"]


def backend_for(*, kind: str = "transformers", model_dir: str | None = None, url: str | None = None,
                model: str | None = None, **options) -> GenerationBackend:
    """Return the backend of `kind` for a model directory (transformers) or a server URL (openai).

    kind "transformers": model_dir is required; options device, batch_size, dtype, compile,
      min_new_tokens (see local.TransformersBackend).
    kind "openai": url is required; the model name sent is `model`, else `model_dir` (vLLM and
      transformers serve name a model served from a directory by its path), else the first one the
      server lists; options api_key, timeout, max_retries, concurrency, send_n, extra_body, fence (see
      openai.OpenAICompatibleBackend; fence.ServerFence says which servers may be called).
    """
    if kind == "transformers":
        if not model_dir:
            raise ValueError("the transformers backend needs model_dir")
        if url or model:
            raise ValueError("the transformers backend takes model_dir, not url or model")
        from .local import TransformersBackend  # imports torch: only when a local model is wanted

        _check_options(TransformersBackend, options, kind)
        return TransformersBackend(model_dir, **options)
    if kind == "openai":
        if not url:
            raise ValueError("the openai backend needs url")
        from .openai import OpenAICompatibleBackend

        _check_options(OpenAICompatibleBackend, options, kind)
        return OpenAICompatibleBackend(url, model=model or (str(model_dir) if model_dir else None), **options)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {', '.join(KINDS)}")


def _check_options(cls, options: dict, kind: str) -> None:
    known = [name for name, parameter in inspect.signature(cls).parameters.items()
             if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "model"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for the {kind} backend; expected {', '.join(known)}")
