"""``bench speed``: the engine beside llama.cpp's own ``llama-bench`` on the same model and
threads, what the engine spends per token beyond llama.cpp's decode, and the time to first token
of a resumed game (and of a new game of a scenario played before) with and without the stored
KV cache.

- Prompt reading: a prompt of ``n_prompt`` tokens read from scratch; tokens per second of the
  reading time (``GenerationStats.reading_s``).
- Generation: ``n_gen`` tokens after a one-token prompt with the game's default sampling (the
  end token masked); tokens per second after the first token, as llama-bench's ``tg`` counts.
- Per-token overhead: the engine's milliseconds per generated token minus those of bare
  single-token decodes through llama-cpp-python in the same process (sampling, the stop
  scanner's callback, Python), and minus llama-bench's at the same thread count.
- Resumed game: a session of ``turns`` turns with replies of ``reply_tokens``, stored on quit;
  then a fresh model resumes it without the store and with it, and plays one turn each.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from game.backends.base import GenerationRequest
from game.backends.llamacpp import LlamaCppBackend
from game.bench import llama_bench, with_reply_length
from game.bench.context import ACTIONS
from game.bench.table import format_table
from game.kvstore import KvStore
from game.prompt import PromptFormat
from game.scenario import Scenario
from game.session import DEFAULT_SAMPLING, Session
from game.threads import plan_threads


def _backend(model: Path, settings: dict[str, Any], **extra: Any) -> LlamaCppBackend:
    return LlamaCppBackend(model, **settings, **extra)


def _engine(model: Path, settings: dict[str, Any], n_prompt: int, n_gen: int, reps: int) -> dict:
    """Prompt reading and generation speed of the engine, and its per-token overhead."""
    backend = _backend(model, settings, n_ctx=max(1024, n_prompt + n_gen + 64), cache_mode="none")
    try:
        words = backend.tokenize(" the old house on the hill creaks in the wind", special=False)
        prompt = (
            backend.bos() + (words * (n_prompt // len(words) + 1))[: n_prompt - len(backend.bos())]
        )
        readings = []
        for _ in range(reps):
            request = GenerationRequest(max_tokens=1, sampling=DEFAULT_SAMPLING, seed=1)
            stats = backend.generate([prompt], request, lambda token, piece: True)
            readings.append(len(prompt) / stats.reading_s)
        speeds = []
        for rep in range(reps):
            request = GenerationRequest(
                max_tokens=n_gen, sampling=DEFAULT_SAMPLING, seed=rep + 1, ban_end=True
            )
            stats = backend.generate([prompt[:1]], request, lambda token, piece: True)
            speeds.append(stats.tokens_per_s)
        decode_ms = 1000 * statistics.median(backend.time_decode(n_gen) for _ in range(reps))
        generation = statistics.median(speeds)
        return {
            "threads": backend.threads.generation,
            "threads_batch": backend.threads.batch,
            "prompt_tokens_per_s": statistics.median(readings),
            "gen_tokens_per_s": generation,
            "gen_ms_per_token": 1000 / generation if generation else None,
            "decode_only_ms_per_token": decode_ms,
        }
    finally:
        backend.close()


def _resume(
    model: Path,
    settings: dict[str, Any],
    scenario: Scenario,
    fmt: PromptFormat,
    *,
    turns: int,
    reply_tokens: int,
    n_ctx: int,
) -> dict:
    """Time to first token of ordinary turns, of a resumed game and of a new game of the same
    scenario, with and without the stored KV cache (a temporary store)."""
    scenario = with_reply_length(scenario, reply_tokens)

    def session(backend: LlamaCppBackend) -> Session:
        return Session(
            scenario, backend, fmt, choice_mode="free", seed=1, fixed_reply_tokens=reply_tokens
        )

    def first_turn(store: KvStore | None, exchanges: list | None) -> tuple[float, int, int]:
        backend = _backend(model, settings, n_ctx=n_ctx, kv_store=store)
        try:
            game = session(backend)
            if exchanges is not None:
                game.restore(exchanges, [], 0)
            result = game.play(ACTIONS[turns % len(ACTIONS)])
            return result.stats.ttft_s, result.stats.evaluated_tokens, result.stats.prompt_tokens
        finally:
            backend.close()

    with tempfile.TemporaryDirectory(prefix="bench-speed-kv-") as folder:
        store = KvStore(Path(folder), 1 << 40)
        backend = _backend(model, settings, n_ctx=n_ctx, kv_store=store)
        try:
            game = session(backend)
            ordinary = [
                game.play(ACTIONS[turn % len(ACTIONS)]).stats.ttft_s for turn in range(turns)
            ]
            backend.persist()
            cached = len(backend.cached_tokens)
        finally:
            backend.close()
        exchanges = list(game.exchanges)
        stored_bytes = store.total_bytes()
        cold = first_turn(None, exchanges)
        warm = first_turn(store, exchanges)
        new_cold = first_turn(None, [])
        new_warm = first_turn(store, [])
    steady = statistics.median(ordinary[1:]) if len(ordinary) > 1 else ordinary[0]
    return {
        "turns": turns,
        "reply_tokens": reply_tokens,
        "ordinary_ttft_s": steady,
        "resumed": {
            "without_store_ttft_s": cold[0],
            "with_store_ttft_s": warm[0],
            "without_store_read": cold[1],
            "with_store_read": warm[1],
            "prompt_tokens": cold[2],
        },
        "new_game": {
            "without_store_ttft_s": new_cold[0],
            "with_store_ttft_s": new_warm[0],
            "without_store_read": new_cold[1],
            "with_store_read": new_warm[1],
            "prompt_tokens": new_cold[2],
        },
        "stored_tokens": cached,
        "stored_bytes": stored_bytes,
        "stored_mb_per_1000_tokens": stored_bytes / 1e6 * 1000 / cached if cached else None,
        "resumed_over_ordinary": warm[0] / steady if steady else None,
        "new_game_over_ordinary": new_warm[0] / steady if steady else None,
    }


def run(
    model: Path,
    scenario: Scenario,
    fmt: PromptFormat,
    *,
    quick: bool = False,
    n_gpu_layers: int | None = None,
    n_threads: int | None = None,
    n_threads_batch: int | None = None,
    llama_bench_path: Path | None = None,
) -> dict[str, object]:
    """Every measurement, as plain data (``--json`` prints it)."""
    n_prompt, n_gen, reps, turns = (64, 16, 1, 2) if quick else (512, 128, 3, 4)
    plan = plan_threads(n_threads, n_threads_batch)
    settings = {
        "n_gpu_layers": n_gpu_layers,
        "n_threads": plan.generation,
        "n_threads_batch": plan.batch,
        "seed": 1,
    }
    engine = _engine(model, settings, n_prompt, n_gen, reps)
    result: dict[str, Any] = {
        "model": model.name,
        "quick": quick,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "engine": engine,
    }
    binary = llama_bench.find_llama_bench(llama_bench_path)
    result["llama_bench"] = {"path": str(binary) if binary else None, "rows": [], "error": None}
    if binary is not None:
        threads = sorted({plan.generation, plan.batch} | (set() if quick else {1}))
        try:
            rows = llama_bench.run(
                binary,
                model,
                threads=threads,
                n_prompt=n_prompt,
                n_gen=n_gen,
                depth=0,
                repetitions=reps,
                n_gpu_layers=-1 if n_gpu_layers is None else n_gpu_layers,
            )
        except llama_bench.LlamaBenchError as exc:
            result["llama_bench"]["error"] = str(exc)
            rows = []
        result["llama_bench"]["rows"] = [row.__dict__ for row in rows]
        pp = [row for row in rows if row.n_prompt and not row.n_gen]
        tg = [row for row in rows if row.n_gen and not row.n_prompt]
        if pp and tg:
            best_pp = max(pp, key=lambda row: row.tokens_per_s)
            best_tg = max(tg, key=lambda row: row.tokens_per_s)
            same_tg = next((row for row in tg if row.threads == plan.generation), best_tg)
            result["ratios"] = {
                "prompt_engine_over_best": engine["prompt_tokens_per_s"] / best_pp.tokens_per_s,
                "gen_engine_over_best": engine["gen_tokens_per_s"] / best_tg.tokens_per_s,
                "best_prompt_threads": best_pp.threads,
                "best_gen_threads": best_tg.threads,
            }
            engine["overhead_vs_llama_bench_ms"] = (
                engine["gen_ms_per_token"] - 1000 / same_tg.tokens_per_s
            )
    engine["overhead_vs_decode_ms"] = (
        engine["gen_ms_per_token"] - engine["decode_only_ms_per_token"]
    )
    result["resume"] = _resume(
        model,
        settings,
        scenario,
        fmt,
        turns=turns,
        reply_tokens=32 if quick else 64,
        n_ctx=2048,
    )
    return result


def render(result: dict[str, Any]) -> str:
    """The result as tables."""
    engine = result["engine"]
    lines = [
        f"bench speed: {result['model']}, threads {engine['threads']} (generation) / "
        f"{engine['threads_batch']} (prompt reading)" + (" [quick]" if result["quick"] else ""),
        "",
    ]
    rows = [
        ["engine", engine["threads"], f"pp{result['n_prompt']}", engine["prompt_tokens_per_s"]],
        ["engine", engine["threads"], f"tg{result['n_gen']}", engine["gen_tokens_per_s"]],
    ]
    for row in result["llama_bench"]["rows"]:
        test = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        rows.append(["llama-bench", row["threads"], test, row["tokens_per_s"]])
    lines.append(format_table(["what", "threads", "test", "tokens/s"], rows))
    bench = result["llama_bench"]
    if bench["path"] is None:
        lines.append("llama-bench: not found (make llama-tools builds it; or --llama-bench PATH)")
    elif bench["error"]:
        lines.append(f"llama-bench: {bench['error']}")
    ratios = result.get("ratios")
    if ratios:
        lines += [
            "",
            f"engine / llama-bench at its best thread count: prompt reading "
            f"{ratios['prompt_engine_over_best']:.2f} (best at {ratios['best_prompt_threads']} "
            f"threads), generation {ratios['gen_engine_over_best']:.2f} (best at "
            f"{ratios['best_gen_threads']}); target >= 0.9",
        ]
    lines += [
        "",
        f"per token: engine {engine['gen_ms_per_token']:.2f} ms, bare decode "
        f"{engine['decode_only_ms_per_token']:.2f} ms: overhead "
        f"{engine['overhead_vs_decode_ms']:.2f} ms"
        + (
            f" ({engine['overhead_vs_llama_bench_ms']:.2f} ms over llama-bench)"
            if "overhead_vs_llama_bench_ms" in engine
            else ""
        ),
    ]
    resume = result["resume"]
    table = []
    for key, label in (("resumed", "resumed game"), ("new_game", "new game, same scenario")):
        part = resume[key]
        table.append(
            [label, "without store", part["without_store_read"], part["without_store_ttft_s"]]
        )
        table.append([label, "with store", part["with_store_read"], part["with_store_ttft_s"]])
    table.append(["ordinary turn (median)", "", "", resume["ordinary_ttft_s"]])
    lines += [
        "",
        f"time to first token ({resume['turns']} turns of {resume['reply_tokens']} tokens "
        f"played, then stored):",
        format_table(["turn", "KV cache", "tokens read", "ttft s"], table),
        "",
        f"resumed / ordinary: {resume['resumed_over_ordinary']:.2f}, new game / ordinary: "
        f"{resume['new_game_over_ordinary']:.2f} (target <= 1.5); stored "
        f"{resume['stored_tokens']} tokens in {resume['stored_bytes'] / 1e6:.1f} MB "
        f"({resume['stored_mb_per_1000_tokens']:.1f} MB per 1000 tokens)",
    ]
    return "\n".join(lines)
