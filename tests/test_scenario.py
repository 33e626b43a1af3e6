"""Scenario files: validation messages name the file, the line and the field."""

from pathlib import Path

import pytest

from game.scenario import load_scenario, render_system_prompt
from game.yamlsource import MAX_FILE_BYTES, YamlLoadError
from tests.factories import BUILTIN_SCENARIO, make_scenario

GOOD = """\
id: cave
title: The Cave
description: A cave.
setting: A dark cave.
player: You are lost.
"""


def problems(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "scenario.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(YamlLoadError) as info:
        load_scenario(path)
    return [str(problem).replace(str(path), "F") for problem in info.value.problems]


def test_builtin_scenario_is_valid():
    scenario = load_scenario(BUILTIN_SCENARIO)
    assert scenario.id == "haunted-house"
    assert scenario.opening == "Start!"


def test_good_file_loads(tmp_path):
    path = tmp_path / "cave.yaml"
    path.write_text(GOOD)
    scenario = load_scenario(path)
    assert scenario.title == "The Cave" and scenario.choices == 3


def test_unknown_key_names_its_line(tmp_path):
    assert problems(tmp_path, GOOD + "colour: red\n") == ["F:6: colour: unknown field"]


def test_missing_field_points_at_the_mapping(tmp_path):
    text = GOOD.replace("title: The Cave\n", "")
    assert problems(tmp_path, text) == ["F:1: title: required field is missing"]


def test_nested_field_line(tmp_path):
    text = GOOD + "sampling:\n  temperature: 9\n  top_k: 40\n"
    assert problems(tmp_path, text) == [
        "F:7: sampling.temperature: Input should be less than or equal to 5"
    ]


def test_every_problem_is_reported(tmp_path):
    text = GOOD.replace("id: cave", "id: Not An Id") + "choices: 9\nextra: 1\n"
    found = problems(tmp_path, text)
    assert len(found) == 3
    assert found[0].startswith("F:1: id: String should match pattern")
    assert found[1] == "F:6: choices: Input should be less than or equal to 6"
    assert found[2] == "F:7: extra: unknown field"


def test_setting_or_system_prompt_required(tmp_path):
    text = GOOD.replace("setting: A dark cave.\n", "")
    assert problems(tmp_path, text) == [
        "F:1: scenario: give either 'system_prompt', 'character', or both 'setting' and 'player'"
    ]


def test_yaml_syntax_error(tmp_path):
    found = problems(tmp_path, GOOD + "tags: [a, b\n")
    assert len(found) == 1 and found[0].startswith("F:7: yaml: ")


def test_not_a_mapping(tmp_path):
    assert problems(tmp_path, "- a\n- b\n") == [
        "F:1: scenario: top level must be a mapping, not list"
    ]


def test_empty_file(tmp_path):
    assert problems(tmp_path, "") == ["F:1: file: the file is empty"]
    assert problems(tmp_path, "# only a comment\n") == ["F:1: file: the file is empty"]


def test_not_utf8(tmp_path):
    assert problems(tmp_path, GOOD.encode() + b"author: \xff\xfe\n") == [
        "F:6: file: not UTF-8 text (bad byte 0xff at offset 98)"
    ]


def test_too_large(tmp_path):
    found = problems(tmp_path, GOOD + "# " + "x" * MAX_FILE_BYTES + "\n")
    assert (
        len(found) == 1
        and "the limit is" in found[0]
        and found[0].startswith("F:1: file: the file is ")
    )


def test_python_tags_are_not_run(tmp_path):
    found = problems(tmp_path, GOOD + "author: !!python/object/apply:os.system ['echo pwned']\n")
    assert len(found) == 1 and found[0].startswith("F:6: yaml: could not determine a constructor")


def test_yaml_bomb_fails_fast(tmp_path):
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]\n"
    found = problems(tmp_path, bomb)
    assert len(found) == 1 and "alias bomb" in found[0]


def test_duplicate_keys(tmp_path):
    assert problems(tmp_path, GOOD + "title: Again\n") == ["F:6: title: duplicate key"]


def test_two_documents(tmp_path):
    assert problems(tmp_path, GOOD + "---\nid: other\n") == [
        "F:7: file: only one YAML document is allowed"
    ]


def test_system_prompt_always_asks_for_the_options():
    prompt = render_system_prompt(make_scenario())
    assert "exactly three options as a bulleted list" in prompt
    assert "A long hall with many doors." in prompt
    free = render_system_prompt(
        make_scenario(setting=None, player=None, system_prompt="You run a heist game.", choices=4)
    )
    assert free.startswith("You run a heist game.")
    assert "exactly four options" in free
