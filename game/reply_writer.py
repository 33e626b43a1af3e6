"""Writing one reply: a first pass, then option-block passes while the options fall short."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from game.backends.base import GenerationRequest, GenerationStats, ProgressCallback
from game.choices import (
    are_near_duplicates,
    distinct_count,
    narrative_before_options,
    parse_reply,
    trim_to_sentence,
)
from game.grammar import OPTIONS_LEAD, options_grammar, reply_grammar
from game.streaming import StopScanner
from game.transcript import tokens_for_prefix

if TYPE_CHECKING:
    from game.session import Session

# Option blocks written after the first pass: for a missing block, or options that repeat.
MAX_OPTION_PASSES = 3


# An option pass with less room than this could not write one option line.
MIN_OPTION_PASS_TOKENS = 8

# Tokens the written lead between narrative and options ("\n\n", or "\n\n- ") may take.
LEAD_ALLOWANCE = 4


def option_reserve(count: int, max_tokens: int) -> int:
    """Tokens kept back from the narrative for an option block of ``count`` lines: enough for
    lines of about 100 characters, but never more than half of the reply."""
    return min(count * 32 + 8, max_tokens // 2)


class ReplyWriter:
    """Writes one reply: a first pass, then option-block passes while the options fall short.

    The first pass leaves :func:`option_reserve` tokens unused, so the reply as kept (narrative,
    lead and block) never has more than ``max_tokens`` tokens. When its reply has no complete
    block of distinct options (guided mode), or no options at all (free mode, asked once), the
    reply is cut back to its narrative and continued with the option block alone: the prompt and
    the narrative are already in the model's cache, so only the block is generated.
    """

    def __init__(
        self,
        session: Session,
        history: list[Sequence[int]],
        on_text: Callable[[str], None] | None,
        on_rewind: Callable[[str], None] | None,
        should_stop: Callable[[], bool] | None,
        on_progress: ProgressCallback | None = None,
    ):
        self.session = session
        self.history = history
        # Only the first pass reads the prompt; later passes find it in the cache.
        self.on_progress = on_progress
        self.on_text = on_text
        self.on_rewind = on_rewind
        self.should_stop = should_stop
        self.count = session.scenario.choices
        self.guided = session.choice_mode == "guided"
        self.text = ""
        self.tokens: list[int] | None = []
        self.cut_short = False
        self.option_passes = 0
        self._stats: list[GenerationStats] = []

    def _pass(
        self, lead: str, lead_tokens: list[int], request: GenerationRequest
    ) -> tuple[str, list[int] | None, bool, bool]:
        """Generate after ``lead`` (reply text already written).

        Returns:
            The new text; its token ids (None when a stop string trimmed them); whether the
            player stopped it; whether it was cut short (stopped, or out of tokens).
        """
        session = self.session
        scanner = StopScanner(session.format.stop)
        generated: list[int] = []
        cancelled = False

        def on_token(token: int, piece: str) -> bool:
            nonlocal cancelled
            generated.append(token)
            shown = scanner.feed(piece)
            if shown and self.on_text is not None:
                self.on_text(shown)
            if scanner.stopped:
                return False
            if self.should_stop is not None and self.should_stop():
                cancelled = True
                return False
            return True

        segments = [*self.history, (*session._model_open, *lead_tokens)]
        on_progress, self.on_progress = self.on_progress, None
        # Passed only when asked for, so that a backend (or a test's spy) that does not report
        # progress is called exactly as before.
        extra = {} if on_progress is None else {"on_progress": on_progress}
        stats = session.backend.generate(segments, request, on_token, **extra)
        self._stats.append(stats)
        if not scanner.stopped and not cancelled:
            tail = scanner.flush()
            if tail and self.on_text is not None:
                self.on_text(tail)
        # Trimmed text (a stop string, or a held-back part of one on cancel) no longer matches
        # the ids the model generated.
        exact = not scanner.stopped and not scanner.held
        cut_short = cancelled or stats.finish_reason == "length"
        return scanner.text, (generated if exact else None), cancelled, cut_short

    def _score(self, text: str) -> int:
        choices = parse_reply(text).choices
        if self.guided and len(choices) != self.count:
            return 0
        return distinct_count(choices)

    def write(self) -> None:
        session = self.session
        if session.fixed_reply_tokens is not None:
            request = session._request(session.fixed_reply_tokens, None, ban_end=True)
            self.text, self.tokens, _, self.cut_short = self._pass("", [], request)
            return
        reserve = option_reserve(self.count, session.max_tokens)
        first_max = max(session.max_tokens - reserve - LEAD_ALLOWANCE, 1)
        grammar = reply_grammar(self.count) if self.guided else None
        request = session._request(first_max, grammar)
        self.text, self.tokens, cancelled, out_of_tokens = self._pass("", [], request)
        self.cut_short = out_of_tokens
        if cancelled:
            return
        best = self._score(self.text)
        enough = best == self.count if self.guided else best > 0
        if enough:
            return
        narrative = narrative_before_options(self.text) if self.guided else self.text.rstrip()
        if out_of_tokens:
            narrative = trim_to_sentence(narrative)
        base = narrative + (OPTIONS_LEAD if self.guided else OPTIONS_LEAD + "- ")
        partial = self.text[len(base) :] if self.guided and self.text.startswith(base) else ""
        kept = self._distinct_lines(partial)
        for attempt in range(MAX_OPTION_PASSES if self.guided else 1):
            # Options already distinct stay; only the rest of the block is written again.
            lead = base + "".join(f"{line}\n" for line in kept)
            lead_tokens = self._tokens_for(lead)
            # The reply as kept (lead and block) stays within max_tokens, so the prompt plus
            # this pass never outgrows the context the window left for the reply.
            room = min(reserve, session.max_tokens - len(lead_tokens))
            if room < MIN_OPTION_PASS_TOKENS:
                break
            if self.on_rewind is not None:
                self.on_rewind(lead)
            self.option_passes += 1
            grammar = options_grammar(self.count - len(kept)) if self.guided else None
            request = session._request(room, grammar, retry=attempt)
            block, block_tokens, cancelled, cut_short = self._pass(lead, lead_tokens, request)
            score = self._score(lead + block)
            if score > best or cancelled:
                best = score
                self.cut_short = cut_short
                self.text = lead + block
                self.tokens = None if block_tokens is None else lead_tokens + block_tokens
            if cancelled or best == self.count:
                break
            kept = self._distinct_lines(self.text[len(base) :])
        if self.on_rewind is not None:
            self.on_rewind(self.text)

    def _tokens_for(self, text: str) -> list[int]:
        """Ids that spell ``text``, reusing those of the reply so far where they fit."""
        backend = self.session.backend
        if self.tokens is None:
            return backend.tokenize(text, special=False)
        return tokens_for_prefix(backend, self.tokens, text)

    def _distinct_lines(self, block: str) -> list[str]:
        """The leading complete option lines of ``block`` that repeat no earlier one (fewer
        than all). A last line without its newline may have been cut off, so it never counts."""
        kept: list[str] = []
        complete = block.split("\n")[:-1]
        for line in complete[: self.count - 1]:
            if not line.startswith("- ") or any(
                are_near_duplicates(line[2:], other[2:]) for other in kept
            ):
                break
            kept.append(line)
        return kept

    def stats(self) -> GenerationStats:
        """The passes' costs added up; time to first token is the first pass's, and decoding
        time is each pass's time after its first token."""
        first, last = self._stats[0], self._stats[-1]
        return GenerationStats(
            prompt_tokens=first.prompt_tokens,
            evaluated_tokens=sum(stats.evaluated_tokens for stats in self._stats),
            generated_tokens=sum(stats.generated_tokens for stats in self._stats),
            ttft_s=first.ttft_s,
            total_s=sum(stats.total_s for stats in self._stats),
            finish_reason=last.finish_reason,
            decode_s=sum(stats.decode_seconds for stats in self._stats),
            passes=sum(stats.passes for stats in self._stats),
            reading_s=first.reading_s,
            stored_tokens=first.stored_tokens,
        )
