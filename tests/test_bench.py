"""The shipped benchmarks run (in a short mode): their numbers are measured, not tested here."""

from __future__ import annotations

import json

import pytest

from game.cli import main

pytestmark = pytest.mark.model


def test_bench_choices_short_mode(tmp_path, capsys):
    args = [
        "--log-file",
        str(tmp_path / "log"),
        "bench",
        "choices",
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


def test_bench_choices_table(tmp_path, capsys):
    args = [
        "--log-file",
        str(tmp_path / "log"),
        "bench",
        "choices",
        "--turns",
        "1",
        "--max-tokens",
        "48",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mode    turns  N distinct" in out and "tokens/s guided / free:" in out
