"""Builders shared by the tests."""

from __future__ import annotations

from pathlib import Path

from game.scenario import Scenario

REPO = Path(__file__).resolve().parent.parent
BUILTIN_SCENARIO = REPO / "scenarios" / "classics" / "haunted-house.yaml"

REPLY = "The door creaks open.\n\n- Step inside.\n- Call out.\n- Walk away."


def make_scenario(**overrides: object) -> Scenario:
    data: dict[str, object] = {
        "id": "test",
        "title": "Test Hall",
        "description": "A hall for tests.",
        "setting": "A long hall with many doors.",
        "player": "You are a tester.",
    }
    data.update(overrides)
    return Scenario.model_validate(data)
