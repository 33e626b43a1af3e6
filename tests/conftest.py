"""Shared fixtures: the scripted backend and a session on it."""

from __future__ import annotations

import pytest

from game.backends.scripted import ScriptedBackend
from game.prompt import METHARME
from game.scenario import Scenario
from game.session import Session
from tests.factories import REPLY, make_scenario


@pytest.fixture
def scenario() -> Scenario:
    return make_scenario()


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend(replies=(REPLY,))


@pytest.fixture
def session(scenario: Scenario, backend: ScriptedBackend) -> Session:
    return Session(scenario, backend, METHARME, seed=1)
