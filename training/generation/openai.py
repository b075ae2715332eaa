"""Replies from any OpenAI-compatible chat server (vLLM, SGLang, TGI, `transformers serve`), by URL.

Requests go through the `openai` client: `POST {url}/v1/chat/completions` (and `GET {url}/v1/models`
when no model name is given). Replies to many conversations are requested a few at a time in
parallel, which is how these servers batch. `n` is sent in the request; a server that answers fewer
choices than asked (transformers serve ignores `n`) is asked again, one reply per request with seeds
seed+1, seed+2, ..., and is not sent `n` again by this backend.

    backend = OpenAICompatibleBackend("http://127.0.0.1:8000", model="/store/models/sft-3")

`transformers serve` samples only when the model's generation config says do_sample; for models
whose generation_config.json does not, pass
`extra_body={"generation_config": json.dumps({"do_sample": True})}` (its own request field). Other
sampling fields the OpenAI API lacks (vLLM's top_k, repetition_penalty, ...) go in extra_body too.

Errors name the address and say what went wrong (the status, unreachable, not a chat completion), but
never repeat what the server answered: that text is the server's, not ours to show.

With a `fence` (fence.ServerFence), every request, redirects included, is checked against it before a
connection opens; a refused one fails at once, without the client's retries.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx2
import openai
from openai.types.chat import ChatCompletion

from .base import GenerationError, SamplingSettings, check_conversations
from .fence import ServerFence, ServerRefused

# Sent when no key is given. Without it the client would send this process's OPENAI_API_KEY, a key
# for api.openai.com, to whatever server the URL names; servers started without a key ignore it.
NO_KEY = "none"


class OpenAICompatibleBackend:
    """Generate by HTTP with an OpenAI-compatible server.

    Options:
      model: the model name the server knows; None asks /v1/models and takes the first.
      api_key: sent as a bearer token when given.
      timeout: seconds to wait to connect, or for the reply or the next chunk of a stream.
      max_retries: how often a request is sent again after a connection error, a timeout, a 408,
        409, 429 or 5xx answer (with backoff, as the openai client does); a stream is never resent
        once it has begun.
      concurrency: requests in flight at once during generate().
      send_n: None (send n until the server shows it ignores it), True, or False (one reply per request).
      extra_body: fields merged into every request body, for a server's own extensions.
      fence: the servers this process may call (None: any); see fence.py.
    """

    name = "openai"

    def __init__(self, url: str, *, model: str | None = None, api_key: str | None = None, timeout: float = 300.0,
                 max_retries: int = 2, concurrency: int = 4, send_n: bool | None = None,
                 extra_body: dict | None = None, fence: ServerFence | None = None):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http:// or https:// address, not {url!r}")
        self.url = url.rstrip("/").removesuffix("/v1")
        self.model = model
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.send_n = send_n
        self.extra_body = dict(extra_body or {})
        # openai's own client settings (timeouts, limits, following redirects), with the fence where requests leave.
        http_client = openai.DefaultHttpxClient(transport=FencedTransport(fence)) if fence else None
        self._client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key or NO_KEY, timeout=timeout,
                                     max_retries=max_retries, http_client=http_client)

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
        chunks = self._create(conversation, settings=settings, n=1, seed=settings.seed, stream=True)
        # Closing this generator early closes the stream, and the server stops generating.
        with chunks, self._errors(self._endpoint, broke_off=True):
            events = 0
            for chunk in chunks:
                events += 1
                try:
                    content = chunk.choices[0].delta.content if chunk.choices else None
                except (AttributeError, TypeError, IndexError):
                    raise GenerationError(f"{self._endpoint} sent a stream event that is not a chat completion "
                                          "chunk") from None
                if content:
                    yield content
            if not events:
                raise GenerationError(f"{self._endpoint} answered no server-sent events")

    # Requests

    @property
    def _endpoint(self) -> str:
        return f"{self.url}/v1/chat/completions"

    @contextmanager
    def _errors(self, address: str, *, broke_off: bool = False):
        """Turn the openai client's errors into a GenerationError naming `address`, without the server's text."""
        try:
            yield
        except openai.APIStatusError as exc:
            reason = exc.response.reason_phrase
            raise GenerationError(f"{address} answered {exc.status_code}{f' {reason}' if reason else ''}") from None
        except openai.APITimeoutError:
            raise GenerationError(f"{address} sent nothing for {self.timeout:g} s") from None
        except openai.APIConnectionError as exc:
            what = f"the stream from {address} broke off" if broke_off else f"cannot reach {address}"
            raise GenerationError(f"{what}: {exc.__cause__ or exc}") from exc
        except openai.APIError:  # an error event in a stream: its message is the server's
            raise GenerationError(f"{address} failed while streaming") from None
        except ValueError:  # a body or stream event that is not JSON
            raise GenerationError(f"{address} answered something that is not JSON") from None

    def _resolve_model(self) -> None:
        if self.model:
            return
        address = f"{self.url}/v1/models"
        with self._errors(address):
            try:
                models = [entry.id for entry in self._client.models.list().data]
            except (AttributeError, TypeError):  # the client builds the page from whatever JSON or text came
                raise GenerationError(f"{address} answered something that is not a model list") from None
        if not models:
            raise GenerationError(f"{address} lists no models; name the model the server serves")
        self.model = models[0]

    def _create(self, conversation, *, settings: SamplingSettings, n: int, seed: int | None, stream: bool = False):
        """Send one chat completion request: a ChatCompletion, or a stream of chunks."""
        with self._errors(self._endpoint):
            return self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": m["role"], "content": m["content"]} for m in conversation],
                max_tokens=settings.max_new_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                n=n if n > 1 else openai.omit,
                seed=openai.omit if seed is None else seed,
                stream=stream,
                extra_body=self.extra_body or None,
            )

    def _completion(self, conversation, *, settings: SamplingSettings, n: int, seed: int | None) -> list[str]:
        """Return the reply texts of one request, in the order of their choice index."""
        completion = self._create(conversation, settings=settings, n=n, seed=seed)
        if not isinstance(completion, ChatCompletion):  # the client hands back the text of a non-JSON body
            raise GenerationError(f"{self._endpoint} answered something that is not JSON where a chat completion "
                                  "was expected")
        try:
            choices = sorted(completion.choices, key=lambda choice: getattr(choice, "index", 0) or 0)
            texts = [choice.message.content or "" for choice in choices]
        except (AttributeError, TypeError):
            raise GenerationError(f"{self._endpoint} answered something that is not a chat completion") from None
        if not texts or not all(isinstance(text, str) for text in texts):
            raise GenerationError(f"{self._endpoint} answered a chat completion without replies")
        return texts

    def _replies_for(self, conversation, *, n: int, settings: SamplingSettings) -> list[str]:
        if n > 1 and self.send_n is not False:
            texts = self._completion(conversation, settings=settings, n=n, seed=settings.seed)[:n]
            if len(texts) < n and self.send_n is None:
                self.send_n = False  # the server ignores n: ask once per reply from now on
        else:
            texts = self._completion(conversation, settings=settings, n=1, seed=settings.seed)[:1]
        # One reply per request for the rest, each with its own seed so that they differ.
        while len(texts) < n:
            seed = None if settings.seed is None else settings.seed + len(texts)
            texts.append(self._completion(conversation, settings=settings, n=1, seed=seed)[0])
        return texts


class FencedTransport(httpx2.HTTPTransport):
    """httpx's transport, sending a request only where the fence allows, and to the address it checked.

    A host checked by resolving it is then connected to by that address (the Host header and the TLS
    server name stay the host's), so a name cannot resolve to a public address for the check and to a
    private one for the connection. Given a transport, httpx reads no proxy from the environment: these
    requests go straight to the server.
    """

    def __init__(self, fence: ServerFence, **options):
        super().__init__(**options)
        self.fence = fence

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            address = self.fence.connect_address(str(request.url))
        except ServerRefused as refused:
            # An OpenAIError: the client hands it on as it is, where a transport error would be retried.
            raise openai.APIConnectionError(message=f"refused: {refused}", request=request) from None
        if address is None:
            return super().handle_request(request)
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = request.url.host
        pinned = httpx2.Request(request.method, request.url.copy_with(host=address), headers=request.headers,
                                stream=request.stream, extensions=extensions)
        return super().handle_request(pinned)
