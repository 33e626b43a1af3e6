"""Imports of other programs' formats into packs, and the export of scenarios as cards."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from PIL import Image

from game.imports import ImportFailed, import_files, read_source
from game.imports.export import export_card, scenario_card
from game.imports.library import import_path, pickup
from game.packs import load_pack
from game.scenario import render_system_prompt
from tests import cardfixtures as fx


def imported(tmp_path: Path, *files: Path, into: Path | None = None):
    result = import_files(list(files), into, packs_dir=tmp_path / "packs")
    pack = load_pack(result.pack)
    assert pack.problems == []  # validate accepts it
    return result, pack


def test_v2_json_card_maps_every_field(tmp_path):
    card = fx.write_json(tmp_path / "sera.json", fx.v2_card())
    result, pack = imported(tmp_path, card)
    assert result.scenario_ids == ["seraphina", "seraphina-2"]
    scenario = pack.scenarios["seraphina"].scenario
    character = scenario.character
    assert character.name == "Seraphina"
    assert character.description == "Seraphina is a forest guardian who watches over Traveler."
    assert character.scenario == "Traveler wakes in Seraphina's glade."
    assert character.example_dialogue == "<START>\nTraveler: Hello?\nSeraphina: Rest now."
    assert character.post_history == "Stay in character as Seraphina."
    assert scenario.player_name == "Traveler"
    assert scenario.intro.text == "*Seraphina smiles at Traveler.* You're awake at last."
    assert len(scenario.intro.choices) == 3
    assert scenario.author == "example-author" and scenario.tags == ["fantasy", "guardian"]
    assert character.card["character_version"] == "1.2"
    second = pack.scenarios["seraphina-2"].scenario
    assert second.intro.text.startswith("*Seraphina is gone")
    # The book: secondary keys, the disabled entry kept disabled, the constant one, the keyless
    # one left out and reported.
    lore = {entry.text: entry for entry in scenario.lore}
    assert lore["The glade is warded against Traveler's enemies."].secondary_keys == ["ward"]
    assert lore["The spring heals."].enabled is False
    assert lore["Always: the forest is old."].constant is True
    assert "Keyless and not constant." not in lore
    assert any("could never fire" in line for line in result.report.dropped)
    # The order ranking survives as priority.
    assert (
        lore["The spring heals."].priority
        > lore["The glade is warded against Traveler's enemies."].priority
    )
    prompt = render_system_prompt(scenario)
    assert "You play Seraphina" not in prompt  # the card's own system prompt leads
    assert prompt.startswith("Write Seraphina's part in vivid prose.")
    assert "The player's name is Traveler." in prompt
    assert "Always: the forest is old." in prompt and "The spring heals." not in prompt
    assert prompt.rstrip().endswith('each line starting with "- ".')  # options every reply


def test_png_card_v3_wins_over_v2_and_decorators_map(tmp_path):
    png = fx.write_png_card(tmp_path / "card.png", chara=fx.v2_card(), ccv3=fx.v3_card())
    result, pack = imported(tmp_path, png)
    scenario = pack.scenarios["seraphina-v3"].scenario
    assert scenario.character.name == "Seraphina V3"
    assert scenario.character.card["nickname"] == "Sera"
    lore = {entry.text: entry for entry in scenario.lore}
    assert lore["The moon is always full here."].constant is True
    assert lore["No sun."].enabled is False
    assert lore["The river is cold."].secondary_keys == ["water"]
    assert "Regex only." not in lore
    dropped = "\n".join(result.report.dropped)
    assert "decorator @@depth ignored" in dropped
    assert "regular-expression" in dropped
    assert "group_only_greetings" in dropped


def test_png_with_only_chara_and_compressed_chunk(tmp_path):
    path = tmp_path / "z.png"
    path.write_bytes(fx.png_bytes({"chara": fx.b64(fx.v2_card(name="Zed"))}, z=True))
    _, pack = imported(tmp_path, path)
    assert pack.scenarios["zed"].scenario.character.name == "Zed"


def test_charx_card(tmp_path):
    path = fx.write_charx(tmp_path / "c.charx", fx.v3_card(name="Cx"), {"assets/icon.png": b"x"})
    _, pack = imported(tmp_path, path)
    assert "cx" in pack.scenarios


def test_v1_card_and_empty_first_message(tmp_path):
    v1 = {"name": "Old", "description": "An old card.", "personality": "", "scenario": "",
          "first_mes": "", "mes_example": ""}  # fmt: skip
    result, pack = imported(tmp_path, fx.write_json(tmp_path / "old.json", v1))
    scenario = pack.scenarios["old"].scenario
    assert scenario.intro is None
    assert any("first_mes: empty" in line for line in result.report.dropped)


@pytest.mark.parametrize(
    ("data", "kind", "texts"),
    [
        (fx.SILLYTAVERN_WI, "SillyTavern World Info",
         {"The tower has no door.", "The bell rings thirteen.", "It always rains."}),
        (fx.NOVELAI, "NovelAI lorebook",
         {"Ashgrove is a mining town.", "The mine is flooded.", "Off."}),
        (fx.AI_DUNGEON, "AI Dungeon story cards",
         {"Kaelen captains the Gull.", "The Gull is a leaking sloop."}),
        (fx.KOBOLD_WI, "KoboldAI Lite world info", {"The lantern is blue.", "The crypt opens."}),
    ],
)  # fmt: skip
def test_lorebooks_become_pack_lore(tmp_path, data, kind, texts):
    book = fx.write_json(tmp_path / "book.json", data)
    card = fx.write_json(tmp_path / "card.json", fx.v2_card(character_book=None))
    result, pack = imported(tmp_path, card, book)
    assert result.files[1].kind == kind
    assert {entry.text for entry in pack.manifest.lore} == texts


def test_lorebook_details(tmp_path):
    st = read_source(fx.write_json(tmp_path / "st.json", fx.SILLYTAVERN_WI))
    by_text = {entry["text"]: entry for entry in st.lore}
    assert by_text["The tower has no door."]["secondary_keys"] == ["night"]
    assert by_text["The bell rings thirteen."]["enabled"] is False
    assert by_text["It always rains."]["constant"] is True
    dropped = "\n".join(st.report.dropped)
    assert "probability" in dropped and "groups" in dropped and "position" in dropped
    assert "Empty keys" in dropped or "entry 4" in dropped
    nai = read_source(fx.write_json(tmp_path / "n.lorebook", fx.NOVELAI))
    by_text = {entry["text"]: entry for entry in nai.lore}
    assert by_text["The mine is flooded."]["constant"] is True
    assert by_text["The mine is flooded."]["keys"] == ["mine"]  # the regex key dropped
    assert by_text["Off."]["enabled"] is False
    assert by_text["Ashgrove is a mining town."]["priority"] > 0  # 400 above -200
    aid = read_source(fx.write_json(tmp_path / "aid.json", fx.AI_DUNGEON))
    assert aid.lore[0]["keys"] == ["Kaelen", "captain"]
    assert any("notes" in line for line in aid.report.dropped)
    kob = read_source(fx.write_json(tmp_path / "wi.json", fx.KOBOLD_WI))
    assert kob.lore[1]["secondary_keys"] == ["night"]
    assert any("anti-keys" in line for line in kob.report.dropped)


def test_lorebook_alone_needs_a_pack(tmp_path):
    book = fx.write_json(tmp_path / "book.json", fx.SILLYTAVERN_WI)
    with pytest.raises(ImportFailed, match="holds no scenario"):
        import_files([book], packs_dir=tmp_path / "packs")
    assert not (tmp_path / "packs").exists() or not any((tmp_path / "packs").iterdir())
    card = fx.write_json(tmp_path / "card.json", fx.v2_card())
    result, _ = imported(tmp_path, card)
    _, pack = imported(tmp_path, book, into=result.pack)
    assert {e.text for e in pack.manifest.lore} >= {"The tower has no door."}


def test_kobold_story(tmp_path):
    result, pack = imported(tmp_path, fx.write_json(tmp_path / "gull.json", fx.KOBOLD_STORY))
    scenario = pack.scenarios["gull"].scenario
    assert scenario.intro.text == (
        "The ship lurched as Traveler woke below deck. A bell rang above. Someone shouted."
    )
    assert scenario.memory == "A sea story. The ship is the Gull."
    assert scenario.authors_note == "Keep it tense."
    assert "A sea story" not in scenario.system_prompt
    assert {e.text for e in scenario.lore} == {"The lantern is blue.", "The crypt opens."}
    assert any("authorsnote -> authors_note" in line for line in result.report.mapped)


def test_a_kobold_memory_too_long_for_a_memory_leads_the_system_prompt(tmp_path):
    story = {**fx.KOBOLD_STORY, "memory": "The Gull sails. " * 400, "authorsnote": "x " * 600}
    _, pack = imported(tmp_path, fx.write_json(tmp_path / "gull.json", story))
    scenario = pack.scenarios["gull"].scenario
    assert scenario.memory is None and scenario.authors_note is None
    assert scenario.system_prompt.startswith("The Gull sails.")
    assert "Author's note: x x" in scenario.system_prompt


def test_a_cards_depth_prompt_becomes_the_authors_note_and_memory_survives_a_round_trip(tmp_path):
    result, pack = imported(tmp_path, fx.write_json(tmp_path / "card.json", fx.v2_card()))
    scenario = pack.scenarios["seraphina"].scenario
    assert scenario.authors_note == "x"
    assert any("depth_prompt -> authors_note" in line for line in result.report.mapped)
    remembered = scenario.model_copy(update={"memory": "Seraphina owes the player a favour."})
    out = export_card(remembered, tmp_path / "out.json")
    _, pack2 = imported(tmp_path / "again", out)
    back = pack2.scenarios["seraphina"].scenario
    assert back.memory == "Seraphina owes the player a favour."
    assert back.authors_note == "x"


def test_card_round_trip_keeps_every_card_field(tmp_path):
    original = fx.v2_card(character_book=None)
    _, pack = imported(tmp_path, fx.write_json(tmp_path / "card.json", original))
    scenario = pack.scenarios["seraphina"].scenario
    out = export_card(scenario, tmp_path / "out.json")
    card = json.loads(out.read_text())
    assert card["spec"] == "chara_card_v2"
    for key, value in original["data"].items():
        if key in ("extensions", "character_book"):
            continue
        assert card["data"][key] == value, key
    ours = card["data"]["extensions"].pop("metharme_adventure")
    assert card["data"]["extensions"] == original["data"]["extensions"]
    assert ours["intro_choices"] == scenario.intro.choices
    # And back: the same scenario again.
    _, again = imported(tmp_path, out, into=tmp_path / "again")
    assert again.scenarios["seraphina"].scenario.model_dump() == scenario.model_dump()


def test_round_trip_of_a_book(tmp_path):
    _, pack = imported(tmp_path, fx.write_json(tmp_path / "card.json", fx.v2_card()))
    scenario = pack.scenarios["seraphina"].scenario
    card = scenario_card(scenario)
    book = card["data"]["character_book"]
    assert book["name"] == "Glade lore" and book["scan_depth"] == 3
    _, again = imported(tmp_path, fx.write_json(tmp_path / "x.json", card), into=tmp_path / "b")
    assert again.scenarios["seraphina"].scenario.lore == scenario.lore
    # Per-entry card fields come back for entries left as imported.
    glade = next(e for e in book["entries"] if e["keys"] == ["glade", "clearing"])
    original = fx.BOOK_V2["entries"][0]
    for key in ("id", "name", "comment", "insertion_order", "priority", "position"):
        assert glade[key] == original[key], key
    assert glade["content"] == "The glade is warded against {{user}}'s enemies."


def test_export_png_of_a_builtin_scenario(tmp_path):
    from game.scenario import load_scenario
    from tests.factories import BUILTIN_SCENARIO

    scenario = load_scenario(BUILTIN_SCENARIO)
    out = export_card(scenario, tmp_path / "h.png")
    with Image.open(out) as image:
        card = json.loads(base64.b64decode(image.text["chara"]))
    assert card["data"]["name"] == scenario.title
    assert card["data"]["description"] == scenario.setting
    with pytest.raises(FileExistsError):
        export_card(scenario, out)
    _, pack = imported(tmp_path, out)
    back = pack.scenarios[scenario.id].scenario
    assert (back.title, back.description, back.choices) == (
        scenario.title,
        scenario.description,
        scenario.choices,
    )


def test_ids_do_not_collide_in_an_existing_pack(tmp_path):
    card = fx.write_json(tmp_path / "card.json", fx.v2_card(alternate_greetings=[]))
    first, _ = imported(tmp_path, card)
    second, pack = imported(tmp_path, card, into=first.pack)
    assert second.scenario_ids == ["seraphina-2"]
    assert set(pack.scenarios) == {"seraphina", "seraphina-2"}


def test_pickup_imports_dropped_files_once(tmp_path):
    packs = tmp_path / "packs"
    packs.mkdir()
    fx.write_png_card(packs / "sera.png", chara=fx.v2_card())
    (packs / "junk.json").write_text("{not json")
    notices = pickup(packs)
    assert len(notices) == 2
    assert any(n.startswith("Imported sera.png") for n in notices)
    assert any(n.startswith("Could not import junk.json") for n in notices)
    assert load_pack(packs / "seraphina").problems == []
    assert pickup(packs) == []  # each file once


def test_import_path_is_none_for_filter_text(tmp_path):
    assert import_path("haunted", tmp_path) is None
    card = fx.write_json(tmp_path / "c.json", fx.v2_card())
    notice = import_path(str(card), tmp_path / "packs")
    assert notice is not None and notice.startswith("Imported c.json")


def test_an_alternate_greeting_exports_as_its_own_card(tmp_path):
    original = fx.v2_card(character_book=None)
    _, pack = imported(tmp_path, fx.write_json(tmp_path / "card.json", original))
    card = scenario_card(pack.scenarios["seraphina-2"].scenario)["data"]
    assert card["first_mes"] == original["data"]["alternate_greetings"][0]
    assert card["alternate_greetings"] == [original["data"]["first_mes"]]
