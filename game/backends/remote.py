"""The remote backend: the game's model runs on a llama.cpp ``llama-server`` or on an
OpenAI-compatible engine (vLLM and others), behind the same ``Backend`` protocol as local play.

What the game promises locally holds here too: prompts are sent as token ids (tokenized by the
server, segment by segment, so the seams are exact), guided choices send the same GBNF grammar,
and the server's prompt cache keeps the context that is already read (llama-server: ``cache_prompt``
and ``n_cache_reuse``, its KV shift; vLLM: automatic prefix caching). The two wire formats live
in :mod:`game.backends.dialects`; this module asks the server what it serves and keeps the game
pinned to one slot.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from game.backends.base import (
    BackendError,
    GenerationRequest,
    GenerationStats,
    ProgressCallback,
    TokenCallback,
    joined_prompt,
)
from game.backends.dialects import Dialect, LlamaServerDialect, OpenAIDialect, ReplyReader
from game.backends.http import HttpClient, HttpStatusError
from game.config import Settings
from game.kvcache import CacheMode
from game.saves import ModelInfo

log = logging.getLogger(__name__)

DIALECTS = ("llama-server", "openai")
# SentencePiece vocabularies (llama.cpp's vocab type 1) put a space before the first piece of
# a text; a segment in mid-prompt must not get one (the local backend does the same).
VOCAB_TYPE_SPM = 1
# How long a game waits for the server to notice a reply it dropped (one token, on a slow box).
ABANDON_WAIT_S = 60.0


def _short_name(model: str) -> str:
    """A model's name for status lines: a file path becomes its file name."""
    return PurePosixPath(model).name if "/" in model else model


class RemoteBackend:
    """A model served over HTTP.

    Args:
        url: The server, ``http://host:port``.
        api_key: Sent as a bearer token; never logged nor saved.
        dialect: ``llama-server`` or ``openai``; None asks the server (``/props`` answers only
            on llama-server).
        slot: The llama-server slot this game keeps; None picks an idle one no game has used
            (or the longest unused). Ignored by the OpenAI dialect.
        cache_mode: ``shift`` (prompt cache and KV reuse by shifting), ``prefix`` (prompt cache
            only), ``none`` (every prompt read again; a benchmark baseline).
        seed: Sampling seed when a request carries none.
        n_ctx: Use at most this many tokens of the server's context (benchmarks).

    Raises:
        BackendError: one line when the server is down, the URL wrong, or the slot missing.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        dialect: str | None = None,
        slot: int | None = None,
        cache_mode: CacheMode = "shift",
        seed: int | None = None,
        n_ctx: int | None = None,
    ):
        self.client = HttpClient(url, api_key)
        self.url = self.client.url
        self.cache_mode: CacheMode = cache_mode
        self.seed = seed
        self._lock = threading.Lock()
        self._closed = False
        self.shifts = 0
        self.last_timings: dict[str, Any] = {}
        # What the slot's cache holds after our last reply (prompt and generated tokens), to tell
        # a KV shift on the server from plain prefix reuse.
        self._cached: list[int] = []
        # This game closed a reply early: the server may still be finishing it on our slot.
        self._abandoned = False
        # The slot this game's last summary was written on and the task it ran there: that
        # slot may serve the next summary unless another game has used it since.
        self._aside_task: tuple[int, int] | None = None
        try:
            self._connect(dialect, slot, n_ctx)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            # A server's self-description is input like any other: hostile answers are possible.
            raise BackendError(
                f"{self.url}: the server's description of itself makes no sense "
                f"({type(exc).__name__}); is this a llama-server or an OpenAI-compatible API?"
            ) from None

    def _connect(self, dialect: str | None, slot: int | None, n_ctx: int | None) -> None:
        """Ask the server what it serves and set the backend up for it."""
        props = self._props() if dialect in (None, "llama-server") else None
        if dialect is None:
            dialect = "llama-server" if props is not None else "openai"
            log.info("%s speaks the %s dialect", self.url, dialect)
        if dialect not in DIALECTS:
            raise BackendError(f"unknown server dialect {dialect!r} (llama-server or openai)")
        if dialect == "llama-server" and props is None:
            raise BackendError(
                f"{self.url} is not a llama-server (no /props); try --dialect openai"
            )
        models = self._models()
        if props is None and not models:
            raise BackendError(
                f"{self.url}: HTTP 404: no llama-server or OpenAI-compatible API here "
                "(is this the right URL?)"
            )
        self.dialect_name = dialect
        self.dialect: Dialect
        if dialect == "llama-server":
            assert props is not None
            settings = props.get("default_generation_settings") or {}
            model = str(props.get("model_alias") or props.get("model_path") or "")
            server_ctx = int(settings.get("n_ctx") or 0)
            self._chat_template = props.get("chat_template") or None
            self.total_slots = int(props.get("total_slots") or 1)
            if self.total_slots < 1:
                raise ValueError("total_slots")
            self.slot: int | None = self._pick_slot(slot)
            self.dialect = LlamaServerDialect(self.client, self)
        else:
            model = str(models[0].get("id", "")) if models else ""
            server_ctx = int((models[0].get("max_model_len") if models else 0) or 0)
            self._chat_template = None
            self.total_slots = 1
            self.slot = None
            self.dialect = OpenAIDialect(self.client, self, model)
        meta = (models[0].get("meta") if models else None) or {}
        if not server_ctx:
            server_ctx = int(meta.get("n_ctx") or 0)
        if server_ctx <= 0:
            raise BackendError(f"{self.url} does not say its context size; cannot size the window")
        self._n_ctx = min(server_ctx, n_ctx) if n_ctx else server_ctx
        self._model = model or "remote model"
        self._space_prefix = meta.get("vocab_type") == VOCAB_TYPE_SPM
        self._anchor = self._raw_tokenize("\n", special=False) if self._space_prefix else []
        self._bos = self._find_bos()
        log.info(
            "remote model %s at %s (%s): n_ctx=%d slot=%s bos=%s",
            self.name,
            self.url,
            dialect,
            self._n_ctx,
            self.slot,
            self._bos,
        )

    # -- what the server serves ------------------------------------------------------------------

    def _props(self) -> dict[str, Any] | None:
        try:
            props = self.client.call("GET", "/props")
        except HttpStatusError as exc:
            if exc.status in (404, 405):
                return None
            raise
        return props if isinstance(props, dict) and "default_generation_settings" in props else None

    def _models(self) -> list[dict[str, Any]]:
        try:
            answer = self.client.call("GET", "/v1/models")
        except HttpStatusError as exc:
            if exc.status == 404:
                return []
            raise
        data = answer.get("data") if isinstance(answer, dict) else None
        return [item for item in data or [] if isinstance(item, dict)]

    def slots(self) -> list[dict[str, Any]] | None:
        """llama-server's slot list, or None where the server does not show it (``--no-slots``)."""
        try:
            answer = self.client.call("GET", "/slots")
        except HttpStatusError as exc:
            if exc.status in (404, 501):
                return None
            raise
        return (
            [item for item in answer if isinstance(item, dict)]
            if isinstance(answer, list)
            else None
        )

    def _pick_slot(self, wanted: int | None) -> int | None:
        if wanted is not None:
            if not 0 <= wanted < self.total_slots:
                raise BackendError(
                    f"{self.url} has {self.total_slots} slot(s), 0 to {self.total_slots - 1}: "
                    f"there is no slot {wanted}"
                )
            return wanted
        slots = self.slots()
        if slots is None:
            log.warning("%s hides its slots: the server picks one for each reply", self.url)
            return None
        idle = [slot for slot in slots if not slot.get("is_processing")]
        if not idle:
            raise BackendError(f"every slot of {self.url} is busy with other games; try later")
        # A slot no game has used yet, else the one whose last task is oldest.
        chosen = min(
            idle, key=lambda slot: (slot.get("id_task") is not None, slot.get("id_task", 0))
        )
        return int(chosen["id"])

    def _slot_busy(self) -> bool:
        return any(
            slot.get("id") == self.slot and slot.get("is_processing") for slot in self.slots() or []
        )

    def check_slot(self) -> None:
        """Fail with one line when another game is using this game's slot right now.

        After this game dropped a reply (stopped, cancelled, broken), the server may still be
        busy with it until it notices the closed connection (at its next token): that is waited
        for, not blamed on another game."""
        if self.slot is None:
            return
        busy = self._slot_busy()
        if busy and self._abandoned:
            deadline = time.monotonic() + ABANDON_WAIT_S
            while busy and time.monotonic() < deadline:
                time.sleep(0.1)
                busy = self._slot_busy()
        self._abandoned = False
        if busy:
            raise BackendError(
                f"slot {self.slot} of {self.url} is busy with another game; wait for it, or "
                "play on another slot (--slot)"
            )

    # -- the Backend protocol --------------------------------------------------------------------

    @property
    def name(self) -> str:
        return _short_name(self._model)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def chat_template(self) -> str | None:
        return self._chat_template

    @property
    def supports_grammar(self) -> bool:
        return self.dialect.supports_grammar

    def bos(self) -> list[int]:
        return list(self._bos)

    def _find_bos(self) -> tuple[int, ...]:
        """The tokens the server adds before a text when asked to: the BOS, where the model
        wants one."""
        plain = self._raw_tokenize("a", special=False)
        marked = self.dialect.tokenize("a", special=False, add_special=True)
        if len(marked) > len(plain) and marked[len(marked) - len(plain) :] == plain:
            return tuple(marked[: len(marked) - len(plain)])
        return ()

    def _raw_tokenize(self, text: str, *, special: bool) -> list[int]:
        return self.dialect.tokenize(text, special=special, add_special=False)

    @functools.lru_cache(maxsize=512)  # noqa: B019 - one backend a game; the cache dies with it
    def _tokenize_cached(self, text: str, special: bool, at_start: bool) -> tuple[int, ...]:
        # As the local backend does: at the start of a prompt the server's own tokenization
        # (SentencePiece's leading space included); in mid-prompt, after a newline anchor.
        if at_start or not self._space_prefix:
            return tuple(self._raw_tokenize(text, special=special))
        anchored = self._raw_tokenize("\n" + text, special=special)
        if anchored[: len(self._anchor)] == self._anchor:
            return tuple(anchored[len(self._anchor) :])
        return tuple(self._raw_tokenize(text, special=special))

    def tokenize(self, text: str, *, special: bool, at_start: bool = False) -> list[int]:
        if not text:
            return []
        self._check_open()
        return list(self._tokenize_cached(text, special, at_start))

    def detokenize(self, tokens: Sequence[int]) -> str:
        if not tokens:
            return ""
        self._check_open()
        return self.dialect.detokenize(list(tokens))

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"the connection to {self.url} was closed")

    def generate(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        prompt = joined_prompt(segments, self.n_ctx, f"the server's context of {self.n_ctx}")
        with self._lock:
            self._check_open()
            return self._generate_on_own_slot(prompt, request, on_token, on_progress)

    def _generate_on_own_slot(
        self,
        prompt: list[int],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None,
    ) -> GenerationStats:
        self.check_slot()
        started = time.perf_counter()
        reader = ReplyReader(on_token, on_progress, started)
        try:
            self.dialect.generate(prompt, request, reader)
        except BaseException:
            self._abandoned = True
            raise
        if reader.finish == "stopped":
            self._abandoned = True
        self._note_cache(prompt, reader)
        return reader.stats(len(prompt))

    @property
    def edits_cache_in_place(self) -> bool:
        # A server keeps its slot's cache to itself: it reuses the prompt's common prefix (and,
        # with --cache-reuse, shifted chunks), but cannot be told to evaluate a span in place.
        return False

    def generate_aside(
        self,
        segments: Sequence[Sequence[int]],
        request: GenerationRequest,
        on_token: TokenCallback,
        on_progress: ProgressCallback | None = None,
    ) -> GenerationStats:
        """A prompt that is not the game's (the summary), on another idle slot where the server
        has one no other game uses: the game's slot keeps its cache, so the next turn reads
        only what changed after its common prefix (the summary and the window after it, the
        system prompt not). Else on the game's slot, whose next turn then reads the whole
        prompt again (the fallback the README describes)."""
        prompt = joined_prompt(segments, self.n_ctx, f"the server's context of {self.n_ctx}")
        with self._lock:
            self._check_open()
            aside = self._aside_slot()
            if aside is None:
                return self._generate_on_own_slot(prompt, request, on_token, on_progress)
            reader = ReplyReader(on_token, on_progress, time.perf_counter())
            game_slot, self.slot = self.slot, aside
            try:
                self.dialect.generate(prompt, request, reader)
            finally:
                self.slot = game_slot
            self._aside_task = self._slot_task(aside)
            log.info("summary written on slot %d; slot %s keeps the game's cache", aside, game_slot)
            return reader.stats(len(prompt))

    def _aside_slot(self) -> int | None:
        """An idle slot other than the game's that no game has used, or that this game's last
        summary used (and nothing since); None when there is none (or slots are hidden)."""
        if self.dialect_name != "llama-server" or self.slot is None or self.total_slots < 2:
            return None
        slots = self.slots()
        if slots is None:
            return None
        for slot in slots:
            number, task = slot.get("id"), slot.get("id_task")
            if number == self.slot or slot.get("is_processing") or not isinstance(number, int):
                continue
            if task is None or self._aside_task == (number, task):
                return number
        return None

    def _slot_task(self, number: int) -> tuple[int, int] | None:
        """The slot and the last task it ran, as /slots says now."""
        for slot in self.slots() or []:
            if slot.get("id") == number and isinstance(slot.get("id_task"), int):
                return number, int(slot["id_task"])
        return None

    def prepare(
        self, segments: Sequence[Sequence[int]], on_progress: ProgressCallback | None = None
    ) -> GenerationStats:
        """Nothing to do ahead: the server reads what changed when the next turn comes."""
        prompt = joined_prompt(segments, self.n_ctx, f"the server's context of {self.n_ctx}")
        return GenerationStats(
            prompt_tokens=len(prompt),
            evaluated_tokens=0,
            generated_tokens=0,
            ttft_s=0.0,
            total_s=0.0,
            finish_reason="eos",
        )

    def _note_cache(self, prompt: list[int], reader: ReplyReader) -> None:
        """Count a KV shift when the server reused more than the common prefix of its cache."""
        timings = reader.timings
        self.last_timings = dict(timings)
        common = 0
        for cached, token in zip(self._cached, prompt, strict=False):
            if cached != token:
                break
            common += 1
        cache_n = timings.get("cache_n")
        known = bool(self._cached) and self.cache_mode == "shift"
        if known and isinstance(cache_n, int) and cache_n > common + 1:
            self.shifts += 1
            log.info("server KV shift: %d cached tokens reused, common prefix %d", cache_n, common)
        self._cached = prompt + reader.tokens

    # -- slots on disk ---------------------------------------------------------------------------

    def save_slot(self, filename: str) -> bool:
        """Save this game's slot (its KV cache) on the server, for an instant resume. False
        (logged) where the server does not allow it (no ``--slot-save-path``)."""
        return self._slot_action("save", filename)

    def restore_slot(self, filename: str) -> bool:
        """Load a slot saved by :meth:`save_slot` back into this game's slot; False (logged)
        where the server cannot."""
        return self._slot_action("restore", filename)

    def _slot_action(self, action: str, filename: str) -> bool:
        if self.slot is None or self.dialect_name != "llama-server":
            return False
        try:
            self.client.call(
                "POST", f"/slots/{self.slot}?action={action}", {"filename": filename}, retries=0
            )
        except BackendError as exc:
            log.warning("slot %s %s as %s: %s", self.slot, action, filename, exc)
            return False
        if action == "restore":
            self._cached = []  # unknown to us now: the next reply finds it by prefix
        return True

    def close(self) -> None:
        """Nothing to free on the server: the slot's cache stays for the next game."""
        self._closed = True


def open_remote(settings: Settings, **kwargs: Any) -> RemoteBackend:
    """The remote backend the settings name (``server_url`` set)."""
    assert settings.server_url is not None
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return RemoteBackend(
        settings.server_url,
        api_key=key or None,
        dialect=settings.server_dialect,
        slot=settings.server_slot,
        seed=settings.seed,
        **kwargs,
    )


def remote_model_info(settings: Settings) -> ModelInfo:
    """What a save records of a remote model: its name and the server (no size, no key)."""
    backend = open_remote(settings)
    return ModelInfo(file=f"{backend.name} @ {backend.url}", size=None)
