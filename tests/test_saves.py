"""Saves: round trips, atomic writes under SIGKILL, broken files, names, concurrent writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from game import saves
from game.backends.scripted import ScriptedBackend
from game.prompt import METHARME
from game.saves import (
    ModelInfo,
    SaveError,
    SaveExistsError,
    SaveFolder,
    SaveSlot,
    load,
    new_session_from_save,
    safe_filename,
    snapshot,
)
from game.session import Session
from tests.factories import REPO, make_scenario

MODEL = ModelInfo(file="scripted.gguf", size=123)


def replies(prompt: str) -> str:
    turn = prompt.count("<|model|>")
    return f"Room {turn}: dust and echoes.\n\n- Go on {turn}.\n- Look back {turn}.\n- Wait {turn}."


def played_session(turns: int = 5, n_ctx: int = 2048) -> Session:
    backend = ScriptedBackend(replies=replies, n_ctx=n_ctx)
    session = Session(make_scenario(sampling={"max_tokens": 120}), backend, METHARME, seed=9)
    for turn in range(turns):
        session.play(f"I do thing {turn}.")
    return session


def test_round_trip_keeps_every_field_and_the_next_prompt(tmp_path):
    session = played_session(7, n_ctx=600)  # small enough that the window has slid
    session.undo()
    assert session.window_start > 0
    folder = SaveFolder(tmp_path)
    slot = SaveSlot.new(folder, "My Game", MODEL, pack_id="classics")
    path = slot.save(session)
    assert path == tmp_path / "my-game.json"

    loaded = load(path)
    original = snapshot(
        session,
        name="My Game",
        game_id=slot.game_id,
        created_at=slot.created_at,
        model=MODEL,
        pack_id="classics",
    )
    assert loaded.model_dump(exclude={"updated_at"}) == original.model_dump(exclude={"updated_at"})
    assert loaded.turn_count == 6 and len(loaded.redo) == 2

    resumed = new_session_from_save(loaded, ScriptedBackend(replies=replies, n_ctx=600), METHARME)
    assert resumed.window_start == session.window_start
    assert resumed.generations == session.generations
    assert [e.player.text for e in resumed.exchanges] == [e.player.text for e in session.exchanges]
    assert [e.choices for e in resumed.exchanges] == [e.choices for e in session.exchanges]
    assert resumed.prompt_text("I go on.") == session.prompt_text("I go on.")
    # The next turn builds the same prompt it would have built had the game never stopped.
    session.play("I go on.")
    resumed.play("I go on.")
    assert resumed.backend.detokenize(
        resumed.backend.calls[-1].prompt
    ) == session.backend.detokenize(session.backend.calls[-1].prompt)
    # And undo/redo state came along.
    assert resumed.exchanges[-1].narrative == session.exchanges[-1].narrative


def test_redo_survives_a_save(tmp_path):
    session = played_session(3)
    session.undo()
    session.undo()
    slot = SaveSlot.new(SaveFolder(tmp_path), "g", MODEL)
    resumed = new_session_from_save(
        load(slot.save(session)), ScriptedBackend(replies=replies), METHARME
    )
    assert resumed.redo().player.text == "I do thing 1."
    assert resumed.redo().player.text == "I do thing 2."


def test_the_file_is_readable_json_without_token_ids(tmp_path):
    path = SaveSlot.new(SaveFolder(tmp_path), "g", MODEL).save(played_session(2))
    document = json.loads(path.read_text())
    assert document["schema_version"] == 2
    assert document["memory"] == {
        "memory": "",
        "note": "",
        "summaries": [],
        "auto_summary": True,
    }
    assert document["scenario"]["id"] == "test" and document["scenario_hash"].startswith("sha256:")
    assert [t["role"] for t in document["turns"]] == ["user", "model", "user", "model"]
    assert document["turns"][1]["choices"] == ["Go on 1.", "Look back 1.", "Wait 1."]
    assert not any(key in path.read_text() for key in ('"tokens"', "token_ids", "segments"))
    assert path.read_text().count("\n") > 20  # indented, so it diffs line by line


def test_backup_rotation_keeps_the_previous_version(tmp_path):
    session = played_session(1)
    slot = SaveSlot.new(SaveFolder(tmp_path), "g", MODEL)
    slot.save(session)
    session.play("I do more.")
    slot.save(session)
    assert load(tmp_path / "g.json").turn_count == 2
    assert load(tmp_path / "g.json.bak").turn_count == 1


def test_names_are_safe():
    assert safe_filename("../../etc/passwd") == "etc-passwd"
    assert safe_filename("My Save: Chapter 2!") == "my-save-chapter-2"
    assert safe_filename("/abs/path") == "abs-path"
    assert safe_filename("..") == "save"
    assert safe_filename(".hidden") == "hidden"
    assert "/" not in safe_filename("a/b\\\\c") and "\\\\" not in safe_filename("a/b\\\\c")
    assert len(safe_filename("x" * 500)) <= 64


def test_another_games_save_is_not_clobbered_without_asking(tmp_path):
    folder = SaveFolder(tmp_path)
    SaveSlot.new(folder, "Same Name", MODEL).save(played_session(1))
    other = SaveSlot.new(folder, "same name", MODEL)
    with pytest.raises(SaveExistsError, match="another save has this name"):
        other.save(played_session(2))
    assert load(tmp_path / "same-name.json").turn_count == 1
    other.save(played_session(2), overwrite=True)
    assert load(tmp_path / "same-name.json").turn_count == 2


def test_save_as_moves_the_game_to_a_new_name(tmp_path):
    folder = SaveFolder(tmp_path)
    slot = SaveSlot.new(folder, "first", MODEL)
    session = played_session(1)
    slot.save(session)
    assert slot.save_as(session, "second") == tmp_path / "second.json"
    session.play("More.")
    slot.save(session)
    assert load(tmp_path / "second.json").turn_count == 2
    assert load(tmp_path / "first.json").turn_count == 1


BROKEN = {
    "truncated.json": None,  # filled in from a real save below
    "garbage.json": b"\x00\x01\x02 not json",
    "notutf8.json": b'{"name": "\xff"}',
    "empty.json": b"",
    "list.json": b"[1, 2, 3]",
    "noversion.json": b'{"name": "x"}',
    "future.json": b'{"schema_version": 99, "name": "x"}',
    "wrongshape.json": b'{"schema_version": 1, "name": "x", "turns": "many"}',
}
EXPECTED = {
    "truncated.json": "not valid JSON, truncated or damaged",
    "garbage.json": "not valid JSON, truncated or damaged",
    "notutf8.json": "not UTF-8 text",
    "empty.json": "the file is empty",
    "list.json": "not a save: the top level is a list",
    "noversion.json": "not a save: it has no schema_version",
    "future.json": "written by a newer version of the game (schema 99",
    "wrongshape.json": "not a valid save: ",
}


def test_every_kind_of_broken_file_is_reported_and_left_alone(tmp_path):
    good = SaveSlot.new(SaveFolder(tmp_path), "good", MODEL).save(played_session(2))
    BROKEN["truncated.json"] = good.read_bytes()[:-200]
    before = {}
    for name, data in BROKEN.items():
        (tmp_path / name).write_bytes(data)
        before[name] = data
    for name, expected in EXPECTED.items():
        with pytest.raises(SaveError) as info:
            load(tmp_path / name)
        message = str(info.value)
        assert message.startswith(f"{tmp_path / name}: ") and expected in message, message
        assert "\n" not in message
    listing = SaveFolder(tmp_path).listing()
    assert listing[0].path == good and listing[0].save is not None
    flagged = {entry.path.name: entry.problem for entry in listing[1:]}
    assert set(flagged) == set(BROKEN)
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data


def test_listing_is_newest_first(tmp_path):
    folder = SaveFolder(tmp_path)
    for name in ("old", "middle", "new"):
        SaveSlot.new(folder, name, MODEL).save(played_session(1))
        time.sleep(0.01)
    assert [entry.save.name for entry in folder.listing()] == ["new", "middle", "old"]
    assert folder.newest() == tmp_path / "new.json"
    assert folder.find("middle") == tmp_path / "middle.json"
    assert folder.find("middle.json") == tmp_path / "middle.json"
    with pytest.raises(SaveError, match="no such save"):
        folder.find("missing")


def test_older_schema_versions_are_migrated(tmp_path, monkeypatch):
    path = SaveSlot.new(SaveFolder(tmp_path), "g", MODEL).save(played_session(2))
    document = json.loads(path.read_text())
    # A pretend version 0 that called the turns "history".
    document["schema_version"] = 0
    document["history"] = document.pop("turns")
    path.write_text(json.dumps(document))

    def from_0(old: dict) -> dict:
        new = dict(old)
        new["turns"] = new.pop("history")
        return new

    monkeypatch.setitem(saves.MIGRATIONS, 0, from_0)
    assert load(path).turn_count == 2
    monkeypatch.delitem(saves.MIGRATIONS, 0)
    with pytest.raises(SaveError, match="schema version 0 is too old"):
        load(path)


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from tests.test_saves import played_session, MODEL
    from game.saves import SaveFolder, SaveSlot
    from pathlib import Path
    folder = SaveFolder(Path(sys.argv[1]))
    sessions = [played_session(1), played_session(8)]
    slot = SaveSlot.new(folder, sys.argv[2], MODEL)
    print("ready", flush=True)
    i = 0
    while True:
        slot.save(sessions[i % 2])
        i += 1
    """
)


def test_sigkill_while_saving_never_leaves_a_broken_file(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    folder = tmp_path / "saves"
    for round_ in range(25):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(folder), "victim"], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.005 + (round_ % 5) * 0.007)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for path in folder.glob("victim.json*"):
            assert load(path).turn_count in (1, 8), path
    assert load(folder / "victim.json")


def test_two_processes_saving_into_one_folder(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    folder = tmp_path / "saves"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(folder), name], stdout=subprocess.PIPE, text=True
        )
        for name in ("one", "two")
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    time.sleep(1.0)
    for proc in procs:
        proc.kill()
        proc.wait()
    listing = SaveFolder(folder).listing()
    assert {entry.path.name for entry in listing} == {"one.json", "two.json"}
    assert all(entry.save is not None for entry in listing)


def test_a_writer_waits_for_the_folder_lock(tmp_path):
    """Writers serialize on the folder's lock: while another process holds it, nothing is
    written (this fails when a writer does not take the lock)."""
    import fcntl

    folder = tmp_path / "saves"
    folder.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [sys.executable, str(script), str(folder), "waiter"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            time.sleep(0.5)
            assert not list(folder.glob("waiter.json*")) and not list(folder.glob(".waiter*"))
            fcntl.flock(lock, fcntl.LOCK_UN)
            deadline = time.monotonic() + 10
            while not (folder / "waiter.json").exists():
                assert time.monotonic() < deadline, "the writer never wrote after the unlock"
                time.sleep(0.01)
        finally:
            proc.kill()
            proc.wait()
    assert load(folder / "waiter.json").turn_count in (1, 8)
