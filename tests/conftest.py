"""Shared fixtures: the scripted backend and a session on it; the two real models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from game.backends.scripted import ScriptedBackend
from game.prompt import CHATML, METHARME, PromptFormat
from game.scenario import Scenario
from game.session import Session
from tests.factories import REPLY, make_scenario


@pytest.fixture(autouse=True)
def private_folders(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep every test (and the games it starts in subprocesses) away from the player's own
    settings, log and saves: a settings file of its own points the saves at a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    for variable, folder in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        monkeypatch.setenv(variable, str(home / folder))
    config = home / "config" / "metharme-adventure" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"saves_dir: {home / 'saves'}\n")
    return home


@pytest.fixture
def scenario() -> Scenario:
    return make_scenario()


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend(replies=(REPLY,))


@pytest.fixture
def session(scenario: Scenario, backend: ScriptedBackend) -> Session:
    return Session(scenario, backend, METHARME, seed=1)


@dataclass(frozen=True)
class RealModel:
    """A GGUF the real-model tests run on, with the format its family uses."""

    id: str
    path: Path
    fmt: PromptFormat


@pytest.fixture(scope="session")
def llama_spm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight LLaMA model with LLaMA-1/2's SentencePiece vocabulary (Metharme's),
    written once per test session (see tests/tiny_llama.py)."""
    from tests.tiny_llama import build

    return build(tmp_path_factory.mktemp("tiny-llama") / "tiny-llama-spm.gguf")


@pytest.fixture(scope="session", params=["smollm2", "llama-spm"])
def real_model(request: pytest.FixtureRequest) -> RealModel:
    """Each real model in turn: the embedded SmolLM2 (GPT-2 BPE, ChatML special tokens) and the
    tiny LLaMA-vocabulary model (SentencePiece, Metharme markers as plain text)."""
    if request.param == "smollm2":
        from game.config import embedded_model_path

        return RealModel("smollm2", Path(embedded_model_path()), CHATML)
    return RealModel("llama-spm", request.getfixturevalue("llama_spm_path"), METHARME)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """A real llama-server on the embedded model, 2 slots of 1024 tokens, for the whole run.
    Fails (never skips) when the binary is not built."""
    from tests.llama_server import LlamaServer

    server = LlamaServer(tmp_path_factory.mktemp("llama-server")).start()
    yield server
    server.stop()
