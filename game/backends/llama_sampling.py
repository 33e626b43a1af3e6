"""Sampling for the llama.cpp backend: the sampler chain of one reply and the loop that
samples, streams and feeds back tokens, shared by the game's context and the side context (a
mixin of :class:`game.backends.llamacpp.LlamaCppBackend`)."""

from __future__ import annotations

import codecs
import functools
import math
import time
from collections.abc import Callable, Sequence

from llama_cpp._internals import LlamaSampler

from game.backends.base import FinishReason, GenerationRequest, TokenCallback


class Sampling:
    """The sampler chain and the token loop."""

    _n_vocab: int
    _default_seed: int
    is_end: Callable[[int], bool]
    piece: Callable[[int], bytes]

    def _stream(
        self,
        sample: Callable[[], int],
        evaluate: Callable[[Sequence[int]], None],
        request: GenerationRequest,
        on_token: TokenCallback,
        started: float,
    ) -> tuple[int, FinishReason, float]:
        """Sample and evaluate tokens until the end token, ``max_tokens`` or a stop; returns
        the tokens generated, why it finished and the time to the first token."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        ttft = 0.0
        generated = 0
        finish: FinishReason = "length"
        while generated < request.max_tokens:
            token = sample()
            if generated == 0:
                ttft = time.perf_counter() - started
            if self.is_end(token):
                finish = "eos"
                break
            generated += 1
            keep_going = on_token(token, decoder.decode(self.piece(token)))
            if generated >= request.max_tokens:
                break
            if not keep_going:
                finish = "stopped"
                break
            evaluate([token])
        return generated, finish, ttft

    @functools.cached_property
    def _end_tokens(self) -> list[int]:
        """Every end-of-generation token (a scan of the vocabulary, so only when first asked:
        fixed-length replies need it, a game never does)."""
        return [token for token in range(self._n_vocab) if self.is_end(token)]

    def _make_chain(self, request: GenerationRequest) -> LlamaSampler:
        """The sampler chain for one reply: end-of-generation mask (if asked), repetition
        penalty, top-k, top-p, min-p, temperature, then a seeded draw (greedy at temperature 0)."""
        sampling = request.sampling
        chain = LlamaSampler()
        if request.ban_end:
            chain.add_logit_bias(self._n_vocab, dict.fromkeys(self._end_tokens, -math.inf))
        chain.add_penalties(
            n_vocab=self._n_vocab,
            penalty_last_n=64,
            penalty_repeat=sampling.repeat_penalty or 1.0,
            penalty_freq=0.0,
            penalty_present=0.0,
        )
        temperature = sampling.temperature if sampling.temperature is not None else 0.8
        if temperature <= 0:
            chain.add_greedy()
            return chain
        if sampling.top_k:
            chain.add_top_k(sampling.top_k)
        chain.add_top_p(sampling.top_p if sampling.top_p is not None else 1.0, 1)
        chain.add_min_p(sampling.min_p or 0.0, 1)
        chain.add_temp(temperature)
        seed = request.seed if request.seed is not None else self._default_seed
        chain.add_dist(seed)
        return chain
