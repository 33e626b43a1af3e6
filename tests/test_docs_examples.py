"""The scenario examples in the READMEs are valid (so the docs cannot drift from the schema)."""

from __future__ import annotations

import re

import yaml

from game.packs import load_pack
from game.scenario import Scenario, render_system_prompt
from tests.factories import REPO

BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def test_the_pack_example_of_scenarios_readme_loads(tmp_path):
    manifest, scenario = BLOCK.findall((REPO / "scenarios" / "README.md").read_text())[:2]
    (tmp_path / "pack.yaml").write_text(manifest)
    (tmp_path / "last-light.yaml").write_text(scenario)
    pack = load_pack(tmp_path)
    assert pack.problems == []
    loaded = pack.scenarios["last-light"].scenario
    assert loaded.intro is not None and loaded.player_name == "Tom"
    assert any(entry.secondary_keys for entry in loaded.lore)


def test_the_readme_scenario_and_character_examples_validate():
    blocks = BLOCK.findall((REPO / "README.md").read_text())
    scenario = yaml.safe_load(next(b for b in blocks if b.startswith("id: lighthouse")))
    assert Scenario.model_validate(scenario).intro is not None
    character = yaml.safe_load(next(b for b in blocks if b.startswith("character:")))
    made = Scenario.model_validate(
        {"id": "s", "title": "S", "description": "D.", "player_name": "Robin", **character}
    )
    assert "You play Seraphina" in render_system_prompt(made)
    memory = yaml.safe_load(next(b for b in blocks if b.startswith("memory:")))
    remembered = Scenario.model_validate({**scenario, **memory})
    assert remembered.memory and remembered.authors_note and remembered.summary_budget == 200
