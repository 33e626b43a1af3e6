"""The shipped benchmarks run (in a short mode): their numbers are measured, not tested here."""

from __future__ import annotations

import json

import pytest

from game.bench import choices, context, recall, speed
from game.bench.llama_bench import LlamaBenchError, parse
from game.cli import main
from tests.test_cli import run_game

pytestmark = pytest.mark.model


def test_bench_choices_short_mode(tmp_path, capsys, real_model):
    args = [
        "--log-file",
        str(tmp_path / "log"),
        "bench",
        "choices",
        "--model",
        str(real_model.path),
        "--turns",
        "1",
        "--max-tokens",
        "96",
        "--seed",
        "3",
        "--json",
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert [mode["mode"] for mode in result["modes"]] == ["guided", "free"]
    assert len(result["turns"]) == 2 * len(result["scenarios"]) >= 6
    for mode in result["modes"]:
        assert 0.0 <= mode["exact_share"] <= 1.0 and mode["tokens_per_s"] > 0
    assert result["guided_over_free_tokens_per_s"] > 0
    assert result["same_prompt"]["ratio"] > 0
    # The table is drawn from the same result.
    table = choices.render(result)
    assert "mode    turns  N distinct" in table and "tokens/s guided / free:" in table
    assert "same prompts (each scenario" in table


def test_bench_context_short_mode(tmp_path, capsys, real_model):
    args = [
        "--log-file",
        str(tmp_path / "log"),
        "bench",
        "context",
        "--model",
        str(real_model.path),
        "--turns",
        "10",
        "--n-ctx",
        "768",
        "--reply-tokens",
        "16",
        "--json",
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["key"] for s in result["strategies"]] == ["a", "b", "c", "d"]
    a, b, c, d = result["strategies"]
    # Reusing the cache can only evaluate less; the numbers themselves are for people to read.
    assert c["evaluated_tokens"] <= b["evaluated_tokens"] <= a["evaluated_tokens"]
    assert set(result["targets"]) == {
        f"{key}_{name}"
        for key in "cd"
        for name in ("evaluated_over_new", "slid_p95_ttft_over_steady_median", "wall_over_b")
    }
    assert len(result["per_turn"]["c"]) == len(result["per_turn"]["d"]) == 10
    # Memory on: the window slid, summaries were written aside and put in place.
    work = result["background"]
    assert d["slides"] >= 1 and work["summaries"] >= 1 and work["problems"] == []
    assert work["summary_generated_tokens"] > 0 and work["prepare_evaluated_tokens"] > 0
    assert result["format"] == real_model.fmt.name
    table = context.render(result)
    assert "(c) shift: context shift + hysteresis" in table and "targets for (c):" in table
    assert "(d) memory: shift + story-so-far summaries" in table and "targets for (d):" in table
    assert "background work of (d), while the player read:" in table


def test_bench_recall_on_the_embedded_model_from_the_command_line(tmp_path):
    """The smallest run the command allows, in a process of its own as a player runs it."""
    proc = run_game(
        "bench",
        "recall",
        "--n-ctx",
        "768",
        "--reply-tokens",
        "16",
        "--facts",
        "1",
        "--slides",
        "1",
        "--turns",
        "12",
        "--json",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and result["n_ctx"] == 768
    # The embedded model is too small for the numbers to mean anything, and the output says so.
    assert result["numbers_mean_little"] is True and result["note"] == recall.SMALL_MODEL_NOTE
    assert [run["mode"] for run in result["runs"]] == ["on", "off"]
    for run in result["runs"]:
        assert run["facts"] == len(run["answers"]) == 1 and 0.0 <= run["share"] <= 1.0
        assert run["slides"] >= 1 and run["turns"] == 2 + run["filler_turns"]
        assert run["answers"][0]["question"] == recall.FACTS[0].question
    assert result["runs"][1]["summaries"] == 0
    table = recall.render(result)
    assert "run         recalled  share  turns  slides  summaries" in table
    assert f"note: {recall.SMALL_MODEL_NOTE}" in table


def test_bench_refuses_bad_numbers_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "context", "--reply-tokens", "8"])
    assert info.value.code == 2
    assert "argument --reply-tokens: 8 is not between 16 and 4096" in capsys.readouterr().err


def test_bench_speed_short_mode(tmp_path, capsys):
    args = ["--log-file", str(tmp_path / "log"), "bench", "speed", "--quick", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    engine = result["engine"]
    assert engine["prompt_tokens_per_s"] > 0 and engine["gen_tokens_per_s"] > 0
    assert engine["decode_only_ms_per_token"] > 0
    resume = result["resume"]
    # The stored cache spared the resumed game and the new game most of their reading.
    assert resume["resumed"]["with_store_read"] < resume["resumed"]["without_store_read"] / 4
    assert resume["new_game"]["with_store_read"] < resume["new_game"]["without_store_read"] / 4
    assert resume["stored_bytes"] > 0
    bench = result["llama_bench"]
    if bench["path"] is not None:  # llama-bench is on this machine (make llama-tools)
        assert bench["error"] is None and bench["rows"] and result["ratios"]
    table = speed.render(result)
    assert "per token: engine" in table and "resumed / ordinary:" in table


def test_llama_bench_json_is_parsed_and_bad_output_is_one_line():
    rows = parse(
        '[{"n_threads": 2, "n_prompt": 512, "n_gen": 0, "n_depth": 0, "avg_ts": 322.5, '
        '"stddev_ts": 1.5}, {"n_threads": 2, "n_prompt": 0, "n_gen": 128, "avg_ts": 99.0}]'
    )
    assert [(row.n_prompt, row.n_gen, row.tokens_per_s) for row in rows] == [
        (512, 0, 322.5),
        (0, 128, 99.0),
    ]
    with pytest.raises(LlamaBenchError, match="unexpected llama-bench output"):
        parse("main: error: unknown argument")
