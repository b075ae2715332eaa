"""Replies from any OpenAI-compatible chat server (vLLM, SGLang, TGI, `transformers serve`), by URL.

Only `POST {url}/v1/chat/completions` is used (and `GET {url}/v1/models` when no model name is
given). Replies to many conversations are requested a few at a time in parallel, which is how
these servers batch. `n` is sent in the request; a server that answers fewer choices than asked
(transformers serve ignores `n`) is asked again, one reply per request with seeds seed+1, seed+2, ...,
and is not sent `n` again by this backend.

    backend = OpenAICompatibleBackend("http://127.0.0.1:8000", model="/store/models/sft-3")

`transformers serve` samples only when the model's generation config says do_sample; for models
whose generation_config.json does not, pass
`extra_body={"generation_config": json.dumps({"do_sample": True})}` (its own request field).
"""

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import requests

from .base import GenerationError, SamplingSettings, check_conversations


class OpenAICompatibleBackend:
    """Generate by HTTP with an OpenAI-compatible server.

    Options:
      model: the model name the server knows; None asks /v1/models and takes the first.
      api_key: sent as a bearer token when given.
      timeout: seconds to wait for a whole reply, or for the next chunk of a stream.
      concurrency: requests in flight at once during generate().
      send_n: None (send n until the server shows it ignores it), True, or False (one reply per request).
      extra_body: fields merged into every request body, for a server's own extensions.
    """

    name = "openai"

    def __init__(self, url: str, *, model: str | None = None, api_key: str | None = None, timeout: float = 300.0,
                 concurrency: int = 4, send_n: bool | None = None, extra_body: dict | None = None):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http:// or https:// address, not {url!r}")
        base = url.rstrip("/")
        self.url = base.removesuffix("/v1")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.send_n = send_n
        self.extra_body = dict(extra_body or {})

    def describe(self) -> dict:
        """Return the server and model; "model" is None until the server was asked, when none was given."""
        return {"backend": self.name, "url": self.url, "model": self.model}

    def generate(self, conversations: list[list[dict]], *, n: int, settings: SamplingSettings) -> list[list[str]]:
        check_conversations(conversations, n=n)
        if not conversations:
            return []
        self._resolve_model()
        replies: list[list[str]] = [[] for _ in conversations]
        # The first conversation alone: its answer says whether the server honours n.
        replies[0] = self._replies_for(conversations[0], n=n, settings=settings)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {index: pool.submit(self._replies_for, conversation, n=n, settings=settings)
                       for index, conversation in enumerate(conversations) if index > 0}
            for index, future in futures.items():
                replies[index] = future.result()
        return replies

    def stream(self, conversation: list[dict], *, settings: SamplingSettings) -> Iterator[str]:
        """Yield the reply's text as the server sends it (server-sent events)."""
        check_conversations([conversation], n=1)
        self._resolve_model()
        body = self._body(conversation, settings=settings, n=1, seed=settings.seed)
        body["stream"] = True
        response = self._post(body, stream=True)
        try:
            response.encoding = "utf-8"
            events, other = 0, None
            # chunk_size=None: hand on each piece as it arrives, not after 512 bytes.
            for line in response.iter_lines(chunk_size=None, decode_unicode=True):
                if not line or not line.startswith("data:"):
                    other = other or line  # blank separators, comments, "event:" lines
                    continue
                events += 1
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                event = self._json(data, what="a stream event")
                if isinstance(event, dict) and event.get("error"):
                    raise GenerationError(f"{self._endpoint} failed while streaming: {event['error']}")
                try:
                    choice = event["choices"][0] if event["choices"] else {}
                    content = choice.get("delta", {}).get("content")
                except (KeyError, TypeError, AttributeError):
                    raise GenerationError(f"{self._endpoint} sent a stream event that is not a chat completion "
                                          f"chunk: {data[:200]}") from None
                if content:
                    yield content
            if not events:
                raise GenerationError(f"{self._endpoint} answered no server-sent events: {other!r:.200}")
        except requests.RequestException as exc:
            raise GenerationError(f"the stream from {self._endpoint} broke off: {exc}") from exc
        finally:
            response.close()

    # Requests

    @property
    def _endpoint(self) -> str:
        return f"{self.url}/v1/chat/completions"

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _resolve_model(self) -> None:
        if self.model:
            return
        address = f"{self.url}/v1/models"
        try:
            response = requests.get(address, headers=self._headers(), timeout=self.timeout)
        except requests.RequestException as exc:
            raise GenerationError(f"cannot reach {address}: {exc}") from exc
        if response.status_code != 200:
            raise GenerationError(f"{address} answered {response.status_code}: {response.text[:300]} "
                                  "(name the model instead of asking the server)")
        listing = self._json(response.text, what="a model list", address=address)
        try:
            models = [entry["id"] for entry in listing["data"]]
        except (KeyError, TypeError):
            raise GenerationError(f"{address} answered something that is not a model list: "
                                  f"{response.text[:200]}") from None
        if not models:
            raise GenerationError(f"{address} lists no models; name the model the server serves")
        self.model = models[0]

    def _body(self, conversation, *, settings: SamplingSettings, n: int, seed: int | None) -> dict:
        body = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in conversation],
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        return {**body, **self.extra_body}

    def _post(self, body: dict, *, stream: bool = False) -> requests.Response:
        try:
            response = requests.post(self._endpoint, json=body, headers=self._headers(), timeout=self.timeout,
                                     stream=stream)
        except requests.RequestException as exc:
            raise GenerationError(f"cannot reach {self._endpoint}: {exc}") from exc
        if response.status_code != 200:
            text = response.text[:300]
            response.close()
            raise GenerationError(f"{self._endpoint} answered {response.status_code}: {text}")
        return response

    def _json(self, text: str, *, what: str, address: str | None = None):
        try:
            return json.loads(text)
        except ValueError:
            raise GenerationError(f"{address or self._endpoint} answered something that is not JSON where "
                                  f"{what} was expected: {text[:200]!r}") from None

    def _completion(self, body: dict) -> list[str]:
        """Return the reply texts of one request, in the order of their choice index."""
        response = self._post(body)
        completion = self._json(response.text, what="a chat completion")
        try:
            choices = sorted(completion["choices"], key=lambda choice: choice.get("index", 0))
            texts = [choice["message"]["content"] or "" for choice in choices]
        except (KeyError, TypeError, AttributeError):
            raise GenerationError(f"{self._endpoint} answered something that is not a chat completion: "
                                  f"{response.text[:200]}") from None
        if not texts or not all(isinstance(text, str) for text in texts):
            raise GenerationError(f"{self._endpoint} answered a chat completion without replies: "
                                  f"{response.text[:200]}")
        return texts

    def _replies_for(self, conversation, *, n: int, settings: SamplingSettings) -> list[str]:
        texts = []
        if n > 1 and self.send_n is not False:
            texts = self._completion(self._body(conversation, settings=settings, n=n, seed=settings.seed))[:n]
            if len(texts) < n and self.send_n is None:
                self.send_n = False  # the server ignores n: ask once per reply from now on
        else:
            texts = self._completion(self._body(conversation, settings=settings, n=1, seed=settings.seed))
            texts = texts[:1]
        # One reply per request for the rest, each with its own seed so that they differ.
        while len(texts) < n:
            seed = None if settings.seed is None else settings.seed + len(texts)
            texts.append(self._completion(self._body(conversation, settings=settings, n=1, seed=seed))[0])
        return texts
