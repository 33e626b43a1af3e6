"""``python -m game import`` and ``export`` as a player runs them (subprocesses), and the real
card-to-game path on the embedded model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import cardfixtures as fx
from tests.test_cli import run_game


def packs_dir() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "metharme-adventure" / "packs"


def test_import_prints_the_mapping_and_the_pack_validates(tmp_path):
    card = fx.write_png_card(tmp_path / "sera.png", chara=fx.v2_card())
    book = fx.write_json(tmp_path / "world.json", fx.SILLYTAVERN_WI)
    proc = run_game("import", str(card), str(book), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("mapped: ") and "first_mes -> intro" in line for line in lines)
    assert any(line.startswith("dropped: ") and "probability" in line for line in lines)
    pack = packs_dir() / "seraphina"
    assert lines[-1] == f"wrote {pack} (scenarios: seraphina/seraphina, seraphina/seraphina-2)"
    check = run_game("validate", str(pack), tmp_path=tmp_path)
    assert check.returncode == 0, check.stdout
    listed = run_game("scenarios", tmp_path=tmp_path)
    assert "seraphina/seraphina" in listed.stdout


def test_import_of_a_hostile_file_is_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "deep.json"
    bad.write_text("[" * 50_000 + "]" * 50_000)
    proc = run_game("import", str(bad), "--into", str(tmp_path / "pack"), tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {bad}: the JSON nests deeper than 64 levels\n"
    assert not (tmp_path / "pack").exists()


def test_export_writes_png_and_json_cards(tmp_path):
    out_png, out_json = tmp_path / "h.png", tmp_path / "h.json"
    proc = run_game(
        "export", "haunted-house", "--out", str(out_png), "--out", str(out_json), tmp_path=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    card = json.loads(out_json.read_text())
    assert card["spec"] == "chara_card_v2" and card["data"]["name"]
    again = run_game("export", "haunted-house", "--out", str(out_json), tmp_path=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr
    back = run_game("import", str(out_png), "--into", str(tmp_path / "back"), tmp_path=tmp_path)
    assert back.returncode == 0, back.stderr


@pytest.mark.model
def test_a_card_becomes_a_game_on_the_embedded_model(tmp_path):
    card = fx.write_png_card(tmp_path / "sera.png", chara=fx.v2_card())
    imported = run_game("import", str(card), "--player-name", "Robin", tmp_path=tmp_path)
    assert imported.returncode == 0, imported.stderr
    proc = run_game(
        "play",
        "--headless",
        "--json",
        "--scenario",
        "seraphina/seraphina",
        "--seed",
        "3",
        "--max-tokens",
        "160",
        "--no-save",
        stdin="1\n2\n",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    intro, first, second = lines
    # The card's first message, shown without generating, with its written options.
    assert intro == {
        "turn": 1,
        "intro": True,
        "narrative": "*Seraphina smiles at Robin.* You're awake at last.",
        "choices": ["Greet Seraphina.", "Look around.", "Ask Seraphina what is going on."],
    }
    # Picking option 1 plays it; the model answers in guided mode with three options.
    assert first["action"] == "Greet Seraphina."
    assert first["turn"] == 2 and len(first["choices"]) == 3
    assert second["action"] == first["choices"][1]
    assert len(second["choices"]) == 3
    assert first["narrative"].strip()
