"""Save files: versioned JSON documents that a person can read and diff, written atomically.

A save holds everything needed to go on with the story on any machine: the scenario as it was
played (embedded, so the save outlives its pack), every turn, the undo/redo state, the prompt
format, sampling and seed, what the story remembers (memory, author's note, story-so-far
summaries; schema 2), and which model file it was played on. Token ids are not saved
(they depend on the model); they are rebuilt when the game is resumed.

Guarantees:
- A write goes to a temporary file in the same folder, is flushed and fsynced, and is renamed
  over the old file; the old file is first kept as ``NAME.json.bak``. A crash or ``kill -9`` at
  any moment leaves the old save or the new one, never a broken file.
- Writers in several processes take a lock on the folder, so they never interleave.
- A file that cannot be read gives one line naming the file and what is wrong; it is never
  modified or deleted, and it never stops the other saves from listing.
- The memory block (schema 2) is read strictly: JSON types as written (``"no"`` is not a
  boolean, ``"3"`` not a number of turns), texts within the controller's limits, counted as the
  player wrote them (a role marker neutralised on load is a character longer, and the game
  must still save what it loaded), summaries covering ever more exchanges and none beyond the
  save's (undone ones included). Role markers are neutralised as in the turns; lone surrogates
  become U+FFFD at the boundary; control characters stay text, as in the turns (every front
  end shows them escaped).
- A version-1 save is upgraded by ``MIGRATIONS[1]`` when loaded; the file itself is kept as
  ``NAME.schema-1.json.bak`` the first time the game writes it in version 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)

from game.boundary import BoundaryError
from game.choices import parse_reply
from game.errors import first_error
from game.memory import MAX_SUMMARIES, MEMORY_LIMITS, StoryMemory, Summary
from game.prompt import PromptFormat
from game.savecheck import (
    FileSignature,
    format_problem,
    neutralize_all,
    read_save_document,
    safe_filename,
    turn_order_problem,
    written_length,
)
from game.scenario import Sampling, Scenario
from game.session import ChoiceMode, Session
from game.textsafety import for_terminal, valid_text
from game.transcript import Exchange, make_segment, reply_segment

try:  # POSIX; elsewhere saves are still atomic, only not serialized between processes.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 2
SAVE_SUFFIX = ".json"
BACKUP_SUFFIX = ".json.bak"
MAX_SAVE_BYTES = 32 * 1024 * 1024
LOCK_NAME = ".lock"


def _memory_from_v1(document: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: saves gained what the story remembers beyond the window (the memory,
    the author's note, the story-so-far summaries). A version-1 game starts with its
    scenario's memory and note (scenarios of that time had none) and no summary: the exchanges
    its window had already dropped were forgotten then, and with summaries on the game writes
    the story so far of them at its first idle moment."""
    scenario = document.get("scenario")
    scenario = scenario if isinstance(scenario, dict) else {}
    memory = scenario.get("memory")
    note = scenario.get("authors_note")
    document = dict(document)
    document["memory"] = {
        "memory": memory if isinstance(memory, str) else "",
        "note": note if isinstance(note, str) else "",
        "summaries": [],
        "auto_summary": True,
    }
    return document


# Upgrades of older documents, each from version N (the key) to N + 1; load() walks them.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _memory_from_v1}


class SaveError(Exception):
    """A save cannot be read or written; ``str()`` is one line naming the file."""

    def __init__(self, path: Path, message: str):
        # One line whatever the file or its content is called: escapes shown visibly.
        message = for_terminal(message, one_line=True)
        super().__init__(for_terminal(f"{path}: {message}", one_line=True))
        self.path = path
        self.message = message


class SaveExistsError(SaveError):
    """The name is taken by another game's save; writing would clobber it."""


class SaveConflictError(SaveError):
    """The save file was written by another game (or process) since this game read or wrote
    it: writing now would silently throw the other game's turns away, so nothing is written."""


class SaveNameError(ValueError):
    """A save name that cannot be used; the message is one line for the player."""


MAX_NAME_CHARS = 200


def check_save_name(name: str) -> str:
    """The name as it will be saved (surrounding spaces dropped).

    Raises:
        SaveNameError: when it is empty, longer than a save may hold, or holds control
            characters (a newline in a name would forge a row of the ``saves`` listing).
    """
    # Lone surrogates (a player's undecodable bytes) become U+FFFD: a name must encode.
    cleaned = valid_text(name).strip()
    if not cleaned:
        raise SaveNameError("a save name cannot be empty")
    if len(cleaned) > MAX_NAME_CHARS:
        raise SaveNameError(
            f"a save name is at most {MAX_NAME_CHARS} characters (this one has {len(cleaned)})"
        )
    if any(_is_control(char) for char in cleaned):
        raise SaveNameError("a save name cannot hold control characters")
    return cleaned


def _is_control(char: str) -> bool:
    code = ord(char)
    # C0, DEL and C1 controls; line and paragraph separators; bidi overrides and isolates.
    return (
        code < 32 or 127 <= code < 160 or code in (0x2028, 0x2029) or 0x202A <= code <= 0x202E
    ) or 0x2066 <= code <= 0x2069


class SavedTurn(BaseModel):
    """One turn. ``choices`` and ``cut_short`` are for the model's turns."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "model"]
    text: str
    choices: list[str] = Field(default_factory=list)
    cut_short: bool = False
    # The oldest exchange the window kept when this reply was written (model turns), so that
    # undo puts the window back exactly; absent in saves from before it was recorded.
    window_start: int | None = Field(None, ge=0)


def _within(limit: int) -> Callable[[str], str]:
    """A check that a memory text has at most ``limit`` characters as its writer wrote them
    (see :func:`written_length`): the player may type a role marker into a memory at its
    limit; loaded, the marker is neutralised and one character longer, and the game must still
    save it."""

    def check(text: str) -> str:
        length = written_length(text)
        if length > limit:
            raise ValueError(f"{length} characters; a save holds at most {limit}")
        return text

    return check


# The memory block is read strictly: a hand-edited save whose types are wrong is refused (one
# line naming the field) instead of quietly read as something else ("no" is not True).
_MEMORY_CONFIG = ConfigDict(extra="forbid", strict=True)


class SavedSummary(BaseModel):
    """A story-so-far summary of the first ``through`` exchanges (0: the player's own, written
    before any turn left the window; the first summary the model writes starts from it)."""

    model_config = _MEMORY_CONFIG

    through: int = Field(ge=0)
    text: Annotated[str, Field(min_length=1), AfterValidator(_within(MEMORY_LIMITS["summary"]))]


class SavedMemory(BaseModel):
    """What the story remembers beyond the window (see :mod:`game.memory`)."""

    model_config = _MEMORY_CONFIG

    memory: Annotated[str, AfterValidator(_within(MEMORY_LIMITS["memory"]))] = ""
    note: Annotated[str, AfterValidator(_within(MEMORY_LIMITS["note"]))] = ""
    summaries: list[SavedSummary] = Field(default_factory=list, max_length=MAX_SUMMARIES)
    auto_summary: bool = True

    @classmethod
    def of(cls, memory: StoryMemory) -> SavedMemory:
        return cls(
            memory=memory.memory,
            note=memory.note,
            summaries=[SavedSummary(through=s.through, text=s.text) for s in memory.summaries],
            auto_summary=memory.auto_summary,
        )

    def story_memory(self) -> StoryMemory:
        return StoryMemory(
            memory=self.memory,
            note=self.note,
            summaries=[Summary(s.through, s.text) for s in self.summaries],
            auto_summary=self.auto_summary,
        )


class ModelInfo(BaseModel):
    """The model file a game was played on, to tell the player when it changes."""

    model_config = ConfigDict(extra="forbid")

    file: str
    size: int | None = None


class SaveGame(BaseModel):
    """A saved game (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = SCHEMA_VERSION
    game_id: str
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    created_at: datetime
    updated_at: datetime
    scenario: Scenario
    pack_id: str | None = None
    scenario_id: str
    scenario_hash: str
    prompt_format: str
    choice_mode: ChoiceMode
    sampling: Sampling
    seed: int | None = None
    generations: int = Field(0, ge=0)
    window_start: int = Field(0, ge=0)
    model: ModelInfo
    turns: list[SavedTurn]
    redo: list[SavedTurn] = Field(default_factory=list)
    memory: SavedMemory
    # The identity of the file this document was read from (see SaveSlot.of).
    _source: FileSignature | None = PrivateAttr(default=None)
    # The schema version the file was written in, when it was migrated on loading.
    _migrated_from: int | None = PrivateAttr(default=None)

    @property
    def turn_count(self) -> int:
        """Finished exchanges."""
        return sum(turn.role == "model" for turn in self.turns)


def scenario_hash(scenario: Scenario) -> str:
    """A content hash of a scenario, to tell whether its pack changed since the save."""
    canonical = json.dumps(scenario.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _turns(exchanges: list[Exchange]) -> list[SavedTurn]:
    turns: list[SavedTurn] = []
    for exchange in exchanges:
        turns.append(SavedTurn(role="user", text=exchange.player.text))
        turns.append(
            SavedTurn(
                role="model",
                text=exchange.reply.text,
                choices=exchange.choices,
                cut_short=exchange.cut_short,
                window_start=exchange.window_start,
            )
        )
    return turns


def snapshot(
    session: Session,
    *,
    name: str,
    game_id: str | None = None,
    created_at: datetime | None = None,
    model: ModelInfo,
    pack_id: str | None = None,
) -> SaveGame:
    """The save document of a session as it stands."""
    now = datetime.now(UTC)
    return SaveGame(
        game_id=game_id or uuid.uuid4().hex,
        name=name,
        created_at=created_at or now,
        updated_at=now,
        scenario=session.scenario,
        pack_id=pack_id,
        scenario_id=session.scenario.id,
        scenario_hash=scenario_hash(session.scenario),
        prompt_format=session.format.name,
        choice_mode=session.choice_mode,
        sampling=session.sampling,
        seed=session.seed,
        generations=session.generations,
        window_start=session.window_start,
        model=model,
        turns=_turns(session.exchanges),
        # Undone exchanges are stored oldest first, the order a player would redo them in.
        redo=_turns(list(reversed(session.undone))),
        memory=SavedMemory.of(session.memory),
    )


def _exchanges(session: Session, turns: list[SavedTurn]) -> list[Exchange]:
    backend, fmt = session.backend, session.format
    exchanges: list[Exchange] = []
    for player, reply in zip(turns[0::2], turns[1::2], strict=False):
        parsed = parse_reply(reply.text)
        exchanges.append(
            Exchange(
                make_segment(backend, fmt, "user", player.text),
                reply_segment(backend, fmt, reply.text, None),
                parsed.narrative,
                list(reply.choices),
                reply.cut_short,
                reply.window_start,
            )
        )
    return exchanges


def restore(save: SaveGame, session: Session) -> Session:
    """Put a save's story into a fresh session of the same scenario (tokens are rebuilt)."""
    session.generations = save.generations
    session.restore(
        _exchanges(session, save.turns),
        list(reversed(_exchanges(session, save.redo))),
        save.window_start,
    )
    session.memory = save.memory.story_memory()
    session.startup_notices.clear()
    session.check_memory_fits()
    return session


def new_session_from_save(
    save: SaveGame,
    backend: Any,
    fmt: PromptFormat,
    *,
    sampling: Sampling | None = None,
    choice_mode: ChoiceMode | None = None,
    seed: int | None = None,
) -> Session:
    """A session that goes on with ``save``'s story on ``backend``; ``sampling``, ``choice_mode``
    and ``seed`` replace the save's own when given (the Session checks that a guided mode is
    possible on this backend)."""
    session = Session(
        save.scenario,
        backend,
        fmt,
        sampling=sampling or save.sampling,
        choice_mode=choice_mode or save.choice_mode,
        seed=save.seed if seed is None else seed,
    )
    return restore(save, session)


# -- files ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Serialize writers in every process using ``folder``."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(folder / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a folder be opened
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole,
    keeping the old one as the backup. Call it with the folder's lock held."""
    folder = path.parent
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if path.exists():
            backup = path.with_name(path.stem + BACKUP_SUFFIX)
            # The backup is a second link to the old file: the save's own name never goes
            # missing, not even for a moment.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(backup)
            try:
                os.link(path, backup)
            except OSError:  # a file system without hard links
                backup.write_bytes(path.read_bytes())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def load(path: Path) -> SaveGame:
    """Read a save, migrating an older schema version, checked at the loading boundary
    (:mod:`game.savecheck`): a regular file within MAX_SAVE_BYTES, bounded JSON, turns in
    order, role markers neutralised, a known prompt format.

    Raises:
        SaveError: one line naming the file and what is wrong; the file is left untouched.
    """
    try:
        document, signature = read_save_document(path, MAX_SAVE_BYTES)
    except BoundaryError as exc:
        raise SaveError(path, str(exc)) from None
    if not isinstance(document, dict):
        raise SaveError(path, f"not a save: the top level is a {type(document).__name__}")
    version = document.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SaveError(path, "not a save: it has no schema_version")
    if version > SCHEMA_VERSION:
        raise SaveError(
            path,
            f"written by a newer version of the game (schema {version}; this one reads up to "
            f"{SCHEMA_VERSION}): update the game to load it",
        )
    original = version
    while version < SCHEMA_VERSION:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise SaveError(path, f"schema version {version} is too old to load")
        document = migrate(document)
        version += 1
        document["schema_version"] = version
    try:
        save = SaveGame.model_validate(document)
    except ValidationError as exc:
        raise SaveError(path, f"not a valid save: {first_error(exc, 'save')}") from None
    problem = _story_problem(save)
    if problem:
        raise SaveError(path, f"not a valid save: {problem}")
    # A shared save must not forge turns: markers are neutralised as a player's text is.
    for turn in (*save.turns, *save.redo):
        turn.text = neutralize_all(turn.text)
        turn.choices = [neutralize_all(choice) for choice in turn.choices]
    memory = save.memory
    memory.memory, memory.note = neutralize_all(memory.memory), neutralize_all(memory.note)
    for summary in memory.summaries:
        summary.text = neutralize_all(summary.text)
    save._source = signature
    save._migrated_from = original if original < SCHEMA_VERSION else None
    return save


def _story_problem(save: SaveGame) -> str | None:
    """As strict as a scenario: a known format (checked before any model loads) and turns that
    alternate user, model, ... (else they would be saved back scrambled)."""
    return (
        format_problem(save.prompt_format)
        or turn_order_problem([turn.role for turn in save.turns], "turns")
        or turn_order_problem([turn.role for turn in save.redo], "redo")
        or _summaries_problem(save)
    )


def _summaries_problem(save: SaveGame) -> str | None:
    """Summaries cover ever more exchanges, and only exchanges the save has (undone ones
    included: after an undo, a summary of them serves again on redo)."""
    exchanges = (len(save.turns) + len(save.redo)) // 2
    previous = -1
    for index, summary in enumerate(save.memory.summaries):
        if summary.through <= previous:
            return f"memory.summaries.{index}.through: summaries must cover ever more turns"
        if summary.through > exchanges:
            return (
                f"memory.summaries.{index}.through: covers {summary.through} turns; "
                f"the save has {exchanges}"
            )
        previous = summary.through
    return None


def _readable(path: Path) -> bool:
    """Whether ``path`` holds a save that loads."""
    try:
        load(path)
    except SaveError:
        return False
    return True


@dataclass(frozen=True)
class SaveListing:
    """One file of a save folder: the save, or why it cannot be read."""

    path: Path
    save: SaveGame | None
    problem: str | None


class SaveFolder:
    """The saves in one folder.

    Args:
        folder: Where the save files live; made when the first save is written.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def path_for(self, name: str) -> Path:
        """The file a save of this name goes to."""
        return self.folder / (safe_filename(name) + SAVE_SUFFIX)

    def find(self, name_or_path: str) -> Path:
        """A save named by its file path, its file name, or its save name.

        Raises:
            SaveError: when no such save exists.
        """
        given = Path(name_or_path).expanduser()
        for candidate in (given, self.folder / given, self.path_for(name_or_path)):
            with contextlib.suppress(OSError, ValueError):  # a name too long, a NUL byte
                if candidate.is_file():
                    return candidate
        # A save whose file name came from another rule (an older game's, a cut long name).
        with contextlib.suppress(SaveNameError):
            wanted = check_save_name(name_or_path)
            for entry in self.listing():
                if entry.save is not None and entry.save.name == wanted:
                    return entry.path
        raise SaveError(given, f"no such save (looked in {self.folder})")

    def write(
        self,
        save: SaveGame,
        path: Path,
        *,
        overwrite: bool = False,
        expect: FileSignature | None = None,
    ) -> FileSignature | None:
        """Write ``save`` to ``path`` atomically; return the new file's signature.

        Args:
            expect: The signature ``path`` had when this game last read or wrote it. If the
                file is there now with another signature, another game has written it since.

        Raises:
            SaveConflictError: when ``expect`` is given and the file changed since (checked
                under the folder's lock, so two writers cannot both pass): nothing is written.
            SaveExistsError: when ``path`` holds another game's save (or a file that is not a
                save) and ``overwrite`` is False: nothing is clobbered without asking.
            SaveError: when the file cannot be written.
        """
        text = json.dumps(save.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        # Valid UTF-8 whatever the strings hold (a lone surrogate cannot be encoded).
        data = valid_text(text).encode()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with _folder_lock(self.folder):
                current = FileSignature.of_path(path) if expect is not None else None
                if current is not None and current != expect and _readable(path):
                    # (A damaged file is no one's save: it is replaced, and kept as .bak.)
                    raise SaveConflictError(
                        path,
                        "another game saved here since this one loaded or saved it; nothing "
                        "was written (save under a new name to keep this game)",
                    )
                if path.exists() and not overwrite:
                    try:
                        other = load(path).game_id
                    except SaveError:
                        other = None
                    if other != save.game_id:
                        raise SaveExistsError(path, "another save has this name")
                write_atomic(path, data)
                return FileSignature.of_path(path)
        except OSError as exc:
            raise SaveError(path, f"cannot write: {exc.strerror or exc}") from None

    def listing(self) -> list[SaveListing]:
        """Every save file, newest first; unreadable ones last, each with its problem."""
        if not self.folder.is_dir():
            return []
        readable: list[SaveListing] = []
        broken: list[SaveListing] = []
        for path in sorted(self.folder.glob("*" + SAVE_SUFFIX)):
            if path.name.startswith("."):
                continue
            try:
                readable.append(SaveListing(path, load(path), None))
            except SaveError as exc:
                broken.append(SaveListing(path, None, exc.message))
        readable.sort(key=lambda entry: entry.save.updated_at if entry.save else 0, reverse=True)
        return readable + broken

    def newest_listing(self) -> SaveListing | None:
        """The most recently played readable save, if any."""
        for entry in self.listing():
            if entry.save is not None:
                return entry
        return None

    def newest(self) -> Path | None:
        """The file of the most recently played readable save, if any."""
        newest = self.newest_listing()
        return newest.path if newest else None


def default_save_name(scenario: Scenario, when: datetime | None = None) -> str:
    """A save name from the scenario and the time: ``haunted-house 2026-11-27 18-30``."""
    when = when or datetime.now().astimezone()
    return f"{scenario.id} {when:%Y-%m-%d %H-%M-%S}"


@dataclass
class SaveSlot:
    """Where one game saves itself: its name, its file, and who it is (so that an autosave
    overwrites its own file but never another game's).

    Attributes:
        folder: The save folder.
        name: The player's name for the save.
        game_id: The game's identity, kept across saves and resumes.
        created_at: When the game began.
        model: The model file it is played on now.
        pack_id: The pack its scenario came from, if known.
        owned: The file this slot wrote last (or was loaded from): writing there again needs no
            look at what it holds, so an autosave never re-reads the whole save, and a save the
            game itself wrote never blocks it.
        signature: The identity of ``owned`` as this slot last read or wrote it: a save finds
            the file changed when another game wrote it since, and refuses
            (:class:`SaveConflictError`) instead of overwriting that game's turns.
    """

    folder: SaveFolder
    name: str
    game_id: str
    created_at: datetime
    model: ModelInfo
    pack_id: str | None = None
    owned: Path | None = None
    signature: FileSignature | None = None
    migrated_from: int | None = None

    @classmethod
    def new(
        cls, folder: SaveFolder, name: str, model: ModelInfo, pack_id: str | None = None
    ) -> SaveSlot:
        """A slot for a new game.

        Raises:
            SaveNameError: when ``name`` cannot be a save's name.
        """
        name = check_save_name(name)
        return cls(folder, name, uuid.uuid4().hex, datetime.now(UTC), model, pack_id)

    @classmethod
    def of(
        cls, folder: SaveFolder, save: SaveGame, model: ModelInfo, path: Path | None = None
    ) -> SaveSlot:
        """The slot of a save loaded from ``path``, now played on ``model``: it goes on saving
        into that file when the file is in ``folder``."""
        slot = cls(folder, save.name, save.game_id, save.created_at, model, save.pack_id)
        if path is not None and path.parent.resolve() == folder.folder.resolve():
            slot.owned = path
            slot.signature = save._source
            slot.migrated_from = save._migrated_from
        return slot

    @property
    def path(self) -> Path:
        return self.owned or self.folder.path_for(self.name)

    def save(self, session: Session, *, overwrite: bool = False) -> Path:
        """Write the session to this slot's file; see :meth:`SaveFolder.write`."""
        path = self.path
        try:
            document = snapshot(
                session,
                name=self.name,
                game_id=self.game_id,
                created_at=self.created_at,
                model=self.model,
                pack_id=self.pack_id,
            )
        except ValidationError as exc:
            # A game the save format cannot hold (a bug): one line, and the file untouched.
            raise SaveError(path, f"the game cannot be saved: {first_error(exc, 'save')}") from None
        own = path == self.owned
        if own and self.migrated_from is not None:
            self._keep_original(path, self.migrated_from)
        expect = self.signature if own and not overwrite else None
        signature = self.folder.write(document, path, overwrite=overwrite or own, expect=expect)
        self.owned, self.signature = path, signature
        return path

    def _keep_original(self, path: Path, version: int) -> None:
        """Keep a save written in an older schema as ``NAME.schema-N.json.bak`` before it is
        first written in the new one (an older game can still open that copy)."""
        original = path.with_name(f"{path.stem}.schema-{version}{BACKUP_SUFFIX}")
        if not original.exists():
            try:
                os.link(path, original)
            except OSError:
                try:
                    original.write_bytes(path.read_bytes())
                except OSError as exc:
                    message = f"cannot keep the schema-{version} original: {exc}"
                    raise SaveError(path, message) from None
        self.migrated_from = None

    def save_as(self, session: Session, name: str, *, overwrite: bool = False) -> Path:
        """Save under a new name; later saves of this game go there.

        Raises:
            SaveNameError: when ``name`` cannot be a save's name (nothing changes).
            SaveError: when it cannot be written there (nothing changes).
        """
        name = check_save_name(name)
        if name == self.name:
            return self.save(session, overwrite=overwrite)
        previous = self.name, self.owned, self.signature
        self.name, self.owned, self.signature = name, None, None
        try:
            return self.save(session, overwrite=overwrite)
        except SaveError:
            self.name, self.owned, self.signature = previous
            raise


def model_info(path: Path) -> ModelInfo:
    """The name and size of a model file."""
    try:
        size: int | None = path.stat().st_size
    except OSError:
        size = None
    return ModelInfo(file=path.name, size=size)
