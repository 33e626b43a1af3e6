"""Thread defaults: physical cores for generation, every logical CPU for prompt reading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from game.config import embedded_model_path
from game.threads import logical_cpus, physical_cores, plan_threads


def fake_topology(root: Path, siblings: list[str]) -> Path:
    for cpu, text in enumerate(siblings):
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "thread_siblings_list").write_text(text + "\n")
    return root


def test_a_machine_with_smt_generates_on_its_physical_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    root = fake_topology(tmp_path, ["0,2", "1,3", "0,2", "1,3"])
    assert physical_cores(root) == 2
    plan = plan_threads(physical=physical_cores(root), logical=4)
    assert (plan.generation, plan.batch) == (2, 4)


def test_a_machine_without_smt_uses_every_core_for_both(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    root = fake_topology(tmp_path, ["0", "1"])
    assert plan_threads(physical=physical_cores(root), logical=2) == plan_threads(
        physical=2, logical=2
    )
    assert plan_threads(physical=2, logical=2).generation == 2


def test_unreadable_topology_falls_back_to_the_logical_count(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert physical_cores(tmp_path / "missing") == 3


def test_settings_override_the_defaults():
    plan = plan_threads(3, None, physical=8, logical=16)
    assert (plan.generation, plan.batch) == (3, 16)
    assert plan_threads(None, 5, physical=8, logical=16).batch == 5
    # Prompt reading never gets fewer threads than generation unless asked.
    assert plan_threads(32, None, physical=8, logical=16).batch == 32


@pytest.mark.model
def test_the_real_backend_runs_with_the_planned_threads():
    from game.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(embedded_model_path(), n_ctx=256)
    try:
        params = backend._llm.context_params
        assert params.n_threads == physical_cores() == backend.threads.generation
        assert params.n_threads_batch == logical_cpus() == backend.threads.batch
    finally:
        backend.close()
    backend = LlamaCppBackend(embedded_model_path(), n_ctx=256, n_threads=1, n_threads_batch=1)
    try:
        assert (backend._llm.context_params.n_threads, backend.threads.batch) == (1, 1)
    finally:
        backend.close()
