"""Settings: one precedence (defaults < config file < environment < command line), and a
write-back that changes only what the player changed."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from game.cli import build_parser, settings_from_args
from game.config import ConfigError, Settings, load_settings, save_settings


def write(path, text: str):
    path.write_text(text)
    return path


def test_each_layer_beats_the_one_below(tmp_path, monkeypatch):
    config = write(tmp_path / "c.yaml", "n_ctx: 1024\nn_threads: 2\nsampling:\n  top_k: 12\n")
    assert load_settings(tmp_path / "none.yaml").n_ctx == 2048  # defaults
    assert load_settings(config).n_ctx == 1024  # file over defaults
    monkeypatch.setenv("METHARME_N_CTX", "4096")
    monkeypatch.setenv("METHARME_SAMPLING__TEMPERATURE", "0.3")
    from_env = load_settings(config)
    assert from_env.n_ctx == 4096 and from_env.n_threads == 2  # environment over file
    assert from_env.sampling.temperature == 0.3 and from_env.sampling.top_k == 12
    cli = load_settings(config, {"n_ctx": 512, "sampling": {"temperature": 0.9}})
    assert cli.n_ctx == 512 and cli.sampling.temperature == 0.9  # command line over all
    assert cli.sampling.top_k == 12


def test_the_command_line_reaches_the_settings(monkeypatch):
    monkeypatch.setenv("METHARME_SEED", "4")
    args = build_parser().parse_args(["play", "--temperature", "0.2", "--n-ctx", "1024"])
    merged = settings_from_args(args)
    assert (merged.sampling.temperature, merged.n_ctx, merged.seed) == (0.2, 1024, 4)


def test_bad_values_name_their_source(tmp_path, monkeypatch):
    config = write(tmp_path / "c.yaml", "n_ctx: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: n_ctx: Input should be greater"):
        load_settings(config)
    monkeypatch.setenv("METHARME_N_GPU_LAYERS", "lots")
    with pytest.raises(ConfigError, match="n_gpu_layers"):
        load_settings(tmp_path / "none.yaml")


def test_save_writes_only_what_changed(tmp_path, monkeypatch):
    config = write(tmp_path / "c.yaml", "saves_dir: /my/saves\nsampling:\n  top_k: 12\n")
    monkeypatch.setenv("METHARME_N_THREADS", "3")
    before = load_settings(config, {"n_ctx": 1024})
    after = before.model_copy(
        update={"sampling": before.sampling.model_copy(update={"temperature": 0.5})}
    )
    save_settings(after, before, config)
    written = yaml.safe_load(config.read_text())
    assert written == {"saves_dir": "/my/saves", "sampling": {"top_k": 12, "temperature": 0.5}}
    # Clearing a value in the form removes it from the file.
    cleared = after.model_copy(update={"saves_dir": None})
    save_settings(cleared, after, config)
    assert "saves_dir" not in yaml.safe_load(config.read_text())


values = st.fixed_dictionaries(
    {},
    optional={
        "n_ctx": st.integers(256, 8192),
        "n_threads": st.one_of(st.none(), st.integers(1, 64)),
        "seed": st.one_of(st.none(), st.integers(0, 2**31 - 1)),
        "choice_mode": st.sampled_from([None, "guided", "free"]),
        "temperature": st.one_of(st.none(), st.floats(0, 5)),
    },
)


@settings(max_examples=50, deadline=None)
@given(first=values, second=values)
def test_a_write_back_round_trips(tmp_path_factory, first, second):
    config = tmp_path_factory.mktemp("cfg") / "config.yaml"

    def apply(base: Settings, changes: dict) -> Settings:
        changes = dict(changes)
        temperature = changes.pop("temperature", base.sampling.temperature)
        sampling = base.sampling.model_copy(update={"temperature": temperature})
        return base.model_copy(update={**changes, "sampling": sampling})

    start = load_settings(config)
    one = apply(start, first)
    save_settings(one, start, config)
    assert load_settings(config) == one
    two = apply(one, second)
    save_settings(two, one, config)
    assert load_settings(config) == two
