"""The command line, run as a player runs it: ``python -m game`` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from game.cli import main
from tests.factories import BUILTIN_SCENARIO, REPO


def run_game(*args: str, stdin: str = "", tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "game", "--log-file", str(tmp_path / "game.log"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


@pytest.mark.model
def test_headless_json_game_on_the_embedded_model(tmp_path):
    actions = "I look around.\n1\n/undo\nI walk to the gate.\n/retry\n/quit\nnever read\n"
    proc = run_game(
        "play",
        "--headless",
        "--json",
        "--seed",
        "11",
        "--max-tokens",
        "160",
        stdin=actions,
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    # Opening, two actions, an undo (no output), a new action, a retry of it.
    assert [turn["turn"] for turn in turns] == [1, 2, 3, 3, 3]
    assert turns[0]["action"] == "Start!"
    for turn in turns:
        assert {
            "narrative",
            "choices",
            "prompt_tokens",
            "evaluated_tokens",
            "generated_tokens",
            "ttft_s",
            "tokens_per_s",
        } <= set(turn)
        # Up to three option passes may follow a reply; each is bounded too.
        assert 0 < turn["generated_tokens"] <= 160 * 4
        assert len(turn["choices"]) == 3  # guided: every reply ends with its options
        # An option pass reads only the few tokens written between narrative and options.
        assert turn["evaluated_tokens"] <= turn["prompt_tokens"] + 6 * turn["option_passes"]
    assert turns[0]["evaluated_tokens"] >= turns[0]["prompt_tokens"]
    # Later turns reuse the cached prompt.
    assert turns[1]["evaluated_tokens"] < turns[1]["prompt_tokens"] / 3
    # A retry re-reads nothing but the last prompt token (and the option passes' leads).
    assert turns[4]["evaluated_tokens"] <= 1 + 6 * turns[4]["option_passes"]
    # Nothing from llama.cpp reached the terminal; it is in the log file.
    assert "llama" not in proc.stderr.lower()
    assert "llama_model_loader" in (tmp_path / "game.log").read_text()


@pytest.mark.model
def test_headless_text_game(tmp_path):
    proc = run_game(
        "play",
        "--headless",
        "--max-tokens",
        "24",
        "--seed",
        "1",
        stdin="Go on.\n",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("The House on Hollow Hill\n")
    assert proc.stdout.count("> ") == 2
    assert "Traceback" not in proc.stderr


def test_bad_model_path_is_one_line(tmp_path):
    proc = run_game(
        "play", "--headless", "--model", str(tmp_path / "missing.gguf"), tmp_path=tmp_path
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"error: model file not found: {tmp_path / 'missing.gguf'}"
    )
    assert "Traceback" not in proc.stderr


def test_unknown_scenario(tmp_path, capsys):
    assert (
        main(["--log-file", str(tmp_path / "l"), "play", "--headless", "--scenario", "nope"]) == 2
    )
    assert (
        capsys.readouterr().err
        == "error: no scenario with id 'nope' (scenarios: classics/ashgrove, classics/derelict, classics/haunted-house)\n"
    )


def test_invalid_scenario_file_when_playing(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\n")
    assert (
        main(["--log-file", str(tmp_path / "l"), "play", "--headless", "--scenario", str(bad)]) == 2
    )
    assert f"error: {bad}:1: title: required field is missing" in capsys.readouterr().err


def test_validate_good_files_exit_0(tmp_path):
    proc = run_game("validate", str(BUILTIN_SCENARIO), str(REPO / "scenarios"), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout == ""


def test_validate_reports_every_problem_one_line_each(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "id: a\ntitle: A\ndescription: d\nsetting: s\nplayer: p\ncolour: red\n"
    )
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe")
    (tmp_path / "c.yaml").write_text("title: [unclosed\n")
    proc = run_game("validate", str(tmp_path), tmp_path=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'a.yaml'}:6: colour: unknown field"
    assert lines[1].startswith(f"{tmp_path / 'b.yaml'}:1: file: not UTF-8 text")
    assert lines[2].startswith(f"{tmp_path / 'c.yaml'}:2: yaml: ")
    assert len(lines) == 3
    assert "Traceback" not in proc.stderr


def test_validate_missing_file(tmp_path, capsys):
    assert main(["--log-file", str(tmp_path / "l"), "validate", str(tmp_path / "none.yaml")]) == 1
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'none.yaml'}:1: file: No such file")


def test_scenarios_lists_the_builtin(capsys, tmp_path):
    assert main(["--log-file", str(tmp_path / "l"), "scenarios"]) == 0
    assert "haunted-house" in capsys.readouterr().out


def test_bad_setting_is_one_line(tmp_path, capsys):
    assert main(["--log-file", str(tmp_path / "l"), "play", "--headless", "--n-ctx", "10"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: n_ctx: Input should be greater than or equal to 256"
    )


@pytest.mark.model
def test_play_autosaves_and_resume_goes_on(tmp_path):
    saves = tmp_path / "saves"
    common = ["--headless", "--json", "--seed", "5", "--max-tokens", "120", "--saves", str(saves)]
    first = run_game(
        "play", *common, "--name", "Night One", stdin="I open the gate.\n", tmp_path=tmp_path
    )
    assert first.returncode == 0, first.stderr
    played = [json.loads(line) for line in first.stdout.splitlines()]
    assert (saves / "night-one.json").is_file()

    listing = run_game("saves", "--saves", str(saves), tmp_path=tmp_path)
    assert listing.returncode == 0
    assert "Night One" in listing.stdout and "The House on Hollow Hill" in listing.stdout

    resumed = run_game("resume", "Night One", *common, stdin="/undo\n/redo\n1\n", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    lines = [json.loads(line) for line in resumed.stdout.splitlines()]
    # First where the story stands, then the new turn, numbered on from the saved ones.
    assert lines[0] == {
        "resumed": True,
        "turn": 2,
        "narrative": played[-1]["narrative"],
        "choices": played[-1]["choices"],
    }
    assert lines[-1]["turn"] == 3 and lines[-1]["action"] == played[-1]["choices"][0]
    # The resumed game read its window once, then the new turn.
    assert lines[-1]["evaluated_tokens"] >= lines[-1]["prompt_tokens"]

    again = run_game("play", *common, "--name", "Night One", stdin="", tmp_path=tmp_path)
    assert again.returncode == 2 and "a save named 'Night One' exists" in again.stderr


def test_saves_lists_unreadable_files_without_touching_them(tmp_path):
    (tmp_path / "broken.json").write_text('{"schema_version": 1, "name": "x"')
    proc = run_game("saves", "--saves", str(tmp_path), tmp_path=tmp_path)
    assert proc.returncode == 0
    assert "broken.json" in proc.stdout and "UNREADABLE: not valid JSON" in proc.stdout
    assert (tmp_path / "broken.json").read_text() == '{"schema_version": 1, "name": "x"'


def test_resume_of_a_broken_save_is_one_line(tmp_path):
    (tmp_path / "broken.json").write_text("[]")
    proc = run_game("resume", "broken", "--headless", "--saves", str(tmp_path), tmp_path=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"error: {tmp_path / 'broken.json'}: not a save: the top level is a list"
    )


@pytest.mark.model
def test_a_closed_stdout_ends_quietly(tmp_path):
    """`python -m game play --headless | head -0`: the reader is gone before the story comes."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "game", "--log-file", str(tmp_path / "log")),
            *("play", "--headless", "--max-tokens", "24", "--seed", "1", "--name", "piped"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    proc.stdout.close()
    proc.stdin.write(b"1\n2\n")
    proc.stdin.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "internal error" not in err and "Exception" not in err


def test_a_save_name_too_long_is_one_line_before_anything_loads(tmp_path):
    proc = run_game("play", "--headless", "--name", "n" * 201, tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "error: a save name is at most 200 characters (this one has 201)\n"
    assert proc.stdout == ""


@pytest.mark.model
def test_headless_save_as_with_a_long_name_keeps_playing(tmp_path):
    proc = run_game(
        "play",
        "--headless",
        "--json",
        "--name",
        "kept",
        "--max-tokens",
        "32",
        "--seed",
        "3",
        stdin=f"/save {'n' * 300}\n1\n",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "error: a save name is at most 200 characters (this one has 300)" in proc.stderr
    assert "internal error" not in proc.stderr
    assert [json.loads(line)["turn"] for line in proc.stdout.splitlines()] == [1, 2]


@pytest.mark.model
def test_resume_takes_sampling_and_seed_from_the_command_line(tmp_path):
    first = run_game(
        "play",
        "--headless",
        "--json",
        "--name",
        "over",
        "--max-tokens",
        "40",
        "--seed",
        "5",
        tmp_path=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    resumed = run_game(
        "resume",
        "over",
        "--headless",
        "--json",
        "--max-tokens",
        "24",
        "--seed",
        "9",
        stdin="1\n",
        tmp_path=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[1])["turn"] == 2
    from game.config import load_settings
    from game.saves import load

    saved = load(load_settings().saves_dir / "over.json")
    assert saved.seed == 9 and saved.sampling.max_tokens == 24
