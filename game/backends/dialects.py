"""The two wire formats of the remote backend: llama-server's native ``/completion`` and the
OpenAI-compatible ``/v1/completions`` (vLLM and others), and the reader both feed a reply into."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from game.backends.base import (
    BackendError,
    FinishReason,
    GenerationCancelled,
    GenerationRequest,
    GenerationStats,
    ProgressCallback,
    TokenCallback,
)
from game.backends.http import EventStream, HttpClient, HttpStatusError

if TYPE_CHECKING:
    from game.backends.remote import RemoteBackend

log = logging.getLogger(__name__)

# llama-server reuses a cached chunk by shifting it when at least this many tokens match (the
# server-side context shift); exchanges are longer than this, so whole turns move.
CACHE_REUSE_CHUNK = 16
# The local backend's sampler chain, in its order (see LlamaCppBackend._make_chain).
SAMPLERS = ["penalties", "top_k", "top_p", "min_p", "temperature"]
REPEAT_LAST_N = 64


class _Stop(Exception):
    """The caller asked to stop the reply."""


class ReplyReader:
    """Takes a reply's events from either dialect and turns them into callbacks and stats.

    Tokens are handed on one event late: llama-server streams the end-of-generation token as an
    ordinary token and says only in its last event that the reply ended on it, so each token
    waits for the next event to know it is not the end.
    """

    def __init__(
        self, on_token: TokenCallback, on_progress: ProgressCallback | None, started: float
    ):
        self.on_token = on_token
        self.on_progress = on_progress
        self.started = started
        self.ttft = 0.0
        self.tokens: list[int] = []
        self.finish: FinishReason = "length"
        self.timings: dict[str, Any] = {}
        self.evaluated: int | None = None
        # ended: the server said the reply is over; done: nothing more to read.
        self.ended = False
        self.done = False
        self._pending: tuple[int, str] | None = None

    def progress(self, read: int, total: int) -> None:
        if self.on_progress is not None and not self.on_progress(read, total):
            raise GenerationCancelled("the reply was cancelled while the server read the prompt")

    def token(self, token: int, text: str) -> None:
        """A generated token; raises _Stop when the caller wants no more."""
        if not self.ttft:
            self.ttft = time.perf_counter() - self.started
        self._flush()
        self._pending = (token, text)

    def _flush(self) -> None:
        if self._pending is None:
            return
        token, text = self._pending
        self._pending = None
        self.tokens.append(token)
        if not self.on_token(token, text):
            self.finish = "stopped"
            raise _Stop

    def end(self, reason: FinishReason, *, last_is_end: bool) -> None:
        """The server ended the reply; ``last_is_end``: its last token was the end token."""
        if last_is_end and self._pending is not None and self._pending[1] == "":
            self._pending = None
        self.finish = reason
        self.ended = True
        with contextlib.suppress(_Stop):
            self._flush()
        self.finish = reason

    def stats(self, prompt_tokens: int) -> GenerationStats:
        evaluated = self.evaluated
        if evaluated is None:
            evaluated = self.timings.get("prompt_n", prompt_tokens)
        return GenerationStats(
            prompt_tokens=prompt_tokens,
            evaluated_tokens=int(evaluated),
            generated_tokens=len(self.tokens),
            ttft_s=self.ttft,
            total_s=time.perf_counter() - self.started,
            finish_reason=self.finish,
        )


def read_reply(stream: EventStream, reader: ReplyReader, handle: Any, where: str) -> None:
    """Feed ``stream``'s events to ``handle(event, reader)`` until the reply ends, the caller
    stops it, or the connection breaks; the connection is closed in every case (which makes the
    server drop the request)."""
    with stream:
        try:
            for event in stream:
                handle(event, reader)
                if reader.done:
                    return
        except _Stop:
            return
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BackendError(
                f"{where}: the server sent a reply the game does not understand "
                f"({type(exc).__name__})"
            ) from None
    if not reader.ended:
        raise BackendError(f"{where}: the server broke off the reply before its end")


def sampling_fields(request: GenerationRequest, seed: int | None) -> dict[str, Any]:
    """The request's sampling as both dialects name it (llama-server reads both spellings of
    the repetition penalty; vLLM reads ``repetition_penalty``, ``top_k``, ``min_p``)."""
    sampling = request.sampling
    temperature = sampling.temperature if sampling.temperature is not None else 0.8
    fields: dict[str, Any] = {
        "temperature": max(temperature, 0.0),
        "top_k": sampling.top_k or 0,
        "top_p": sampling.top_p if sampling.top_p is not None else 1.0,
        "min_p": sampling.min_p or 0.0,
        "repeat_penalty": sampling.repeat_penalty or 1.0,
        "repeat_last_n": REPEAT_LAST_N,
    }
    seed = request.seed if request.seed is not None else seed
    if seed is not None:
        fields["seed"] = seed
    if request.ban_end:
        fields["ignore_eos"] = True
    return fields


class Dialect(Protocol):
    supports_grammar: bool

    def tokenize(self, text: str, *, special: bool, add_special: bool) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    def generate(
        self, prompt: list[int], request: GenerationRequest, reader: ReplyReader
    ) -> None: ...


def _token_list(answer: Any, where: str) -> list[int]:
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(token, int) for token in tokens):
        raise BackendError(f"{where}: the server's /tokenize gave no token ids")
    return tokens


class LlamaServerDialect:
    """llama.cpp's ``llama-server``: ``POST /completion`` with a token-id prompt, streamed with
    token ids, the prompt-reading progress, a GBNF grammar, the prompt cache, KV reuse by
    shifting and the game's own slot."""

    supports_grammar = True

    def __init__(self, client: HttpClient, backend: RemoteBackend):
        self.client = client
        self.backend = backend

    def tokenize(self, text: str, *, special: bool, add_special: bool) -> list[int]:
        payload = {"content": text, "add_special": add_special, "parse_special": special}
        return _token_list(self.client.call("POST", "/tokenize", payload), self.client.url)

    def detokenize(self, tokens: list[int]) -> str:
        answer = self.client.call("POST", "/detokenize", {"tokens": tokens})
        return str(answer.get("content", "")) if isinstance(answer, dict) else ""

    def generate(self, prompt: list[int], request: GenerationRequest, reader: ReplyReader) -> None:
        backend = self.backend
        mode = backend.cache_mode
        payload: dict[str, Any] = {
            "prompt": prompt,
            "n_predict": request.max_tokens,
            "stream": True,
            "return_tokens": True,
            "return_progress": True,
            "cache_prompt": mode != "none",
            "n_cache_reuse": CACHE_REUSE_CHUNK if mode == "shift" else 0,
            "samplers": SAMPLERS,
            **sampling_fields(request, backend.seed),
        }
        if backend.slot is not None:
            payload["id_slot"] = backend.slot
        if request.grammar:
            payload["grammar"] = request.grammar
        stream = self.client.stream("/completion", payload)
        read_reply(stream, reader, self._handle, f"{self.client.url}/completion")

    @staticmethod
    def _handle(event: dict[str, Any], reader: ReplyReader) -> None:
        progress = event.get("prompt_progress")
        if isinstance(progress, dict):
            # Progress events carry a placeholder token; they are not part of the reply.
            total = int(progress.get("total", 0)) - int(progress.get("cache", 0))
            reader.progress(int(progress.get("processed", 0)), max(total, 0))
            return
        if event.get("stop"):
            reader.timings = event.get("timings") or {}
            stop_type = event.get("stop_type")
            reason: FinishReason = "length" if stop_type == "limit" else "eos"
            reader.end(reason, last_is_end=stop_type == "eos")
            reader.done = True
            return
        tokens = event.get("tokens") or []
        text = str(event.get("content", ""))
        for index, token in enumerate(tokens):
            # Several tokens in one event: the text belongs to the last (it may be joined).
            reader.token(int(token), text if index == len(tokens) - 1 else "")


class OpenAIDialect:
    """``POST /v1/completions`` (vLLM, llama-server's OpenAI endpoint and others): a token-id
    prompt, streamed; token ids from the logprobs where the server gives them (vLLM's
    ``return_tokens_as_token_ids``, llama-server's ``id``), else the text is tokenized again; the
    grammar both as vLLM's ``structured_outputs`` and llama.cpp's ``grammar``."""

    def __init__(self, client: HttpClient, backend: RemoteBackend, model: str):
        self.client = client
        self.backend = backend
        self.model = model
        self.supports_grammar = True
        self._warned_text_tokens = False

    def tokenize(self, text: str, *, special: bool, add_special: bool) -> list[int]:
        # vLLM's /tokenize reads ``prompt`` and ``add_special_tokens``; llama-server's reads
        # ``content`` and ``add_special``: one body serves both.
        payload = {
            "model": self.model,
            "prompt": text,
            "content": text,
            "add_special_tokens": add_special,
            "add_special": add_special,
            "parse_special": special,
        }
        return _token_list(self.client.call("POST", "/tokenize", payload), self.client.url)

    def detokenize(self, tokens: list[int]) -> str:
        answer = self.client.call("POST", "/detokenize", {"model": self.model, "tokens": tokens})
        if not isinstance(answer, dict):
            return ""
        return str(answer.get("prompt", answer.get("content", "")))

    def generate(self, prompt: list[int], request: GenerationRequest, reader: ReplyReader) -> None:
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": 1,
            "return_tokens_as_token_ids": True,
            "repetition_penalty": request.sampling.repeat_penalty or 1.0,
            **sampling_fields(request, self.backend.seed),
        }
        if request.grammar and self.supports_grammar:
            payload["structured_outputs"] = {"grammar": request.grammar}
            payload["grammar"] = request.grammar
        where = f"{self.client.url}/v1/completions"
        try:
            stream = self.client.stream("/v1/completions", payload)
        except HttpStatusError as exc:
            if exc.status != 400 or "grammar" not in payload:
                raise
            # Nothing was generated yet, so asking again is safe.
            log.warning("%s refused the grammar (%s): choices are parsed freely", where, exc)
            self.supports_grammar = False
            del payload["structured_outputs"], payload["grammar"]
            stream = self.client.stream("/v1/completions", payload)
        read_reply(stream, reader, self._handle, where)

    def _handle(self, event: dict[str, Any], reader: ReplyReader) -> None:
        usage = event.get("usage")
        if isinstance(usage, dict):
            details = usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            reader.timings = event.get("timings") or {}
            if "prompt_n" not in reader.timings and usage.get("prompt_tokens") is not None:
                reader.evaluated = int(usage["prompt_tokens"]) - int(cached or 0)
        choices = event.get("choices") or []
        if not choices:
            reader.done = usage is not None and reader.ended  # the usage chunk comes last
            return
        choice = choices[0]
        text = str(choice.get("text") or "")
        ids = self._token_ids(choice.get("logprobs"))
        if ids is None and text:
            if not self._warned_text_tokens:
                self._warned_text_tokens = True
                log.warning(
                    "%s does not return token ids: replies are tokenized again (the prompt "
                    "cache may miss a few tokens at each reply's end)",
                    self.client.url,
                )
            ids = self.backend.tokenize(text, special=False)
        ids = ids or []
        for index, token in enumerate(ids):
            reader.token(token, text if index == len(ids) - 1 else "")
        finish = choice.get("finish_reason")
        if finish:
            reader.end("length" if finish == "length" else "eos", last_is_end=finish == "stop")
            reader.done = usage is not None

    @staticmethod
    def _token_ids(logprobs: Any) -> list[int] | None:
        if not isinstance(logprobs, dict):
            return None
        content = logprobs.get("content")
        if isinstance(content, list) and all(
            isinstance(item, dict) and "id" in item for item in content
        ):
            return [int(item["id"]) for item in content]
        tokens = logprobs.get("tokens")
        if isinstance(tokens, list) and all(
            isinstance(item, str) and item.startswith("token_id:") for item in tokens
        ):
            return [int(item.split(":", 1)[1]) for item in tokens]
        return None
