"""Property tests (hypothesis) of every loader: any input gives a valid result or the one-line
error, never another exception; terminal text and file names keep their promises."""

from __future__ import annotations

import contextlib
import io
import json
import unicodedata
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from game.boundary import BoundaryError, parse_json
from game.config import ConfigError, read_config_file
from game.packs import PackError, load_pack
from game.savecheck import MAX_FILENAME_BYTES, safe_filename
from game.saves import SaveError, SaveNameError, check_save_name, load
from game.scenario import load_scenario
from game.textsafety import clean_input, for_terminal, valid_text
from game.yamlsource import YamlLoadError, parse_yaml
from tests import hostile

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Text with everything hostile in it: controls, escapes, surrogates, markers, YAML syntax.
ATOMS = st.sampled_from(
    ["\x1b[31m", "\x1b]0;t\x07", "\n", "\r", "\t", "\x00", "\x9b", "\u202e", "\ud800", "\udcff",
     "<|user|>", "<|im_start|>", "{", "}", "[", "]", ":", "- ", "&a", "*a", "!!python/name:x",
     "'", '"', "#", "9" * 50, "Ночь", "夜"]
)  # fmt: skip
HOSTILE_TEXT = st.lists(st.one_of(ATOMS, st.text(max_size=8)), max_size=30).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | HOSTILE_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(HOSTILE_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


def one_line(text: str) -> None:
    assert "\n" not in text and "\x1b" not in text
    text.encode("utf-8")


@FUZZ
@given(text=HOSTILE_TEXT)
def test_parse_yaml_gives_a_document_or_problems(text):
    try:
        parse_yaml(text, "f.yaml")
    except YamlLoadError as exc:
        for problem in exc.problems:
            one_line(str(problem))


@FUZZ
@given(data=st.binary(max_size=2000) | HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "replace")))
def test_scenario_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("s") / "s.yaml"
    path.write_bytes(data)
    try:
        load_scenario(path)
    except YamlLoadError as exc:
        for problem in exc.problems:
            one_line(str(problem))


@FUZZ
@given(data=st.binary(max_size=2000) | JSON.map(lambda v: json.dumps(v).encode()))
def test_config_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("c") / "config.yaml"
    path.write_bytes(data)
    try:
        assert isinstance(read_config_file(path), dict)
    except ConfigError as exc:
        one_line(str(exc))


@FUZZ
@given(data=st.binary(max_size=2000))
def test_save_files_of_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("b") / "s.json"
    path.write_bytes(data)
    try:
        load(path)
    except SaveError as exc:
        one_line(str(exc))
    assert path.read_bytes() == data


SAVE_KEYS = list(hostile.save_document())


@FUZZ
@given(
    changes=st.dictionaries(st.sampled_from(SAVE_KEYS) | HOSTILE_TEXT, JSON, max_size=3),
    turns=st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "model", "system"]), "text": HOSTILE_TEXT}
        ),
        max_size=6,
    ),
)
def test_save_documents_edited_by_hand(tmp_path_factory, changes, turns):
    path = tmp_path_factory.mktemp("d") / "s.json"
    document = hostile.save_document(turns=turns)
    document.update(changes)
    path.write_text(json.dumps(document))
    try:
        save = load(path)
    except SaveError as exc:
        one_line(str(exc))
        return
    roles = [turn.role for turn in save.turns]
    assert roles == ["user", "model"] * (len(roles) // 2)
    for turn in save.turns:
        assert "<|user|>" not in turn.text and "<|im_start|>" not in turn.text
        turn.text.encode("utf-8")


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(
        st.tuples(
            st.sampled_from(["pack.yaml", "a.yaml", "d/b.yml", "../x.yaml", "/abs.yaml", "x.txt"])
            | HOSTILE_TEXT,
            st.binary(max_size=300) | HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "replace")),
            st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2]),
        ),
        max_size=5,
    ),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
)
# Found by this test: a name cut to nothing at a NUL byte crashed zipfile's is_dir().
@example(members=[("\x00", b"", zipfile.ZIP_STORED)], flips=[])
def test_zip_packs_of_any_shape(tmp_path_factory, members, flips):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, method in members:
            with contextlib.suppress(ValueError, UnicodeEncodeError):
                archive.writestr(zipfile.ZipInfo(valid_text(name) or "n"), data, method)
    raw = bytearray(buffer.getvalue())
    for offset, value in flips:  # damage some bytes
        if offset < len(raw):
            raw[offset] = value
    path = tmp_path_factory.mktemp("z") / "p.zip"
    path.write_bytes(bytes(raw))
    try:
        problems = load_pack(path).problems
    except PackError as exc:
        problems = exc.problems
    for problem in problems:
        one_line(str(problem))


@FUZZ
@given(value=JSON)
def test_parse_json_round_trips_or_refuses(value):
    try:
        parsed = parse_json(json.dumps(value))
    except BoundaryError as exc:
        one_line(str(exc))
        return
    assert parsed == json.loads(json.dumps(value))


@FUZZ
@given(text=HOSTILE_TEXT)
def test_terminal_text_has_no_controls_and_encodes(text):
    shown = for_terminal(text)
    shown.encode("utf-8")
    assert all(char in "\n\t" or unicodedata.category(char) != "Cc" for char in shown)
    line = for_terminal(text, one_line=True)
    one_line(line)
    assert all(unicodedata.category(char) != "Cc" for char in line)
    typed = clean_input(text)
    typed.encode("utf-8")
    assert all(unicodedata.category(char) != "Cc" for char in typed)


@FUZZ
@given(name=HOSTILE_TEXT | st.text())
def test_save_names_and_file_names(name):
    try:
        checked = check_save_name(name)
    except SaveNameError as exc:
        one_line(str(exc))
        checked = valid_text(name)
    slug = safe_filename(checked)
    assert slug and not slug.startswith((".", "-"))
    assert len(slug.encode()) <= MAX_FILENAME_BYTES
    assert not set(slug) & set("/\\\x00:. \n")
    assert Path(slug).name == slug


@FUZZ
@given(word=st.text(alphabet=st.characters(categories=["Ll", "Lu", "Lo"]), min_size=1, max_size=20))
def test_letters_of_any_script_stay_letters(word):
    """Ночь stays ночь: a name of letters is its own file name, lower-cased."""
    normal = unicodedata.normalize("NFC", word)
    expected = normal.lower()
    if all(char.isalnum() for char in normal) and len(expected) <= 64:
        assert slug_of(word) == expected[:64] if len(expected.encode()) <= 120 else True


def slug_of(word: str) -> str:
    return safe_filename(word)
