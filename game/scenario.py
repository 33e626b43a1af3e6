"""Scenarios: the YAML a scenario author writes, validated, and the system prompt it becomes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)

from game.prompt import FORMATS
from game.yamlsource import Problem, YamlDocument, YamlLoadError, load_yaml_file

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# Markers of every prompt format: text that reaches the model must not hold one, whatever the
# model, since it could forge turns of the conversation.
ROLE_MARKERS = tuple(dict.fromkeys(marker for fmt in FORMATS.values() for marker in fmt.markers))


def _no_role_markers(text: str) -> str:
    marker = next((marker for marker in ROLE_MARKERS if marker in text), None)
    if marker is not None:
        raise ValueError(f"contains the role marker {marker!r}, which could forge turns")
    return text


SafeText = Annotated[str, AfterValidator(_no_role_markers)]
ShortText = Annotated[SafeText, Field(min_length=1, max_length=200)]
LongText = Annotated[SafeText, Field(min_length=1, max_length=20_000)]


class Sampling(BaseModel):
    """Sampling settings. Every field is optional so a scenario overrides only what it names."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, ge=0.0, le=5.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=1000)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, ge=0.5, le=3.0)
    max_tokens: int | None = Field(None, ge=16, le=4096)

    def merged_over(self, base: Sampling) -> Sampling:
        """These settings where set, ``base`` elsewhere."""
        return base.model_copy(update=self.model_dump(exclude_none=True))


class LoreEntry(BaseModel):
    """A piece of world knowledge the model sees only when one of its keywords comes up.

    Attributes:
        keys: Words or phrases that trigger the entry (whole words, any case).
        secondary_keys: When given, one of these must appear too (as lorebooks' "selective"
            entries work).
        text: What the model is told.
        priority: Higher goes in first when the lore budget is tight.
        constant: Always in the system prompt instead of triggered.
        enabled: False keeps the entry in the file but out of every prompt.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    keys: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        default_factory=list, max_length=20
    )
    secondary_keys: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        default_factory=list, max_length=20
    )
    text: Annotated[SafeText, Field(min_length=1, max_length=4000)]
    priority: Annotated[int, Field(ge=-100, le=100)] = 0
    constant: bool = False
    enabled: bool = True

    @model_validator(mode="after")
    def _needs_keys(self) -> LoreEntry:
        if not self.constant and not self.keys:
            raise ValueError("a lore entry needs 'keys', unless it is 'constant: true'")
        return self


class Intro(BaseModel):
    """The story's first narration, written by the author and shown without generating.

    It becomes the model's first turn (answering the scenario's ``opening``), so the model
    continues from it in the same voice.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: Annotated[SafeText, Field(min_length=1, max_length=8000)]
    choices: list[ShortText] = Field(default_factory=list, max_length=6)


class Character(BaseModel):
    """A character the model plays (what a character card holds).

    Attributes:
        name: The character's name.
        description: Who they are: looks, history, situation.
        personality: A short summary of their personality.
        scenario: The circumstances the story starts in.
        example_dialogue: Example lines that show how they speak.
        post_history: Instructions that end the system prompt.
        card: Fields of the character card this was imported from that the engine does not
            use (creator notes, version, extensions ...); never sent to the model, written back
            by ``export``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: ShortText
    description: LongText | None = None
    personality: LongText | None = None
    scenario: LongText | None = None
    example_dialogue: LongText | None = None
    post_history: LongText | None = None
    card: dict[str, JsonValue] = Field(default_factory=dict)


class Scenario(BaseModel):
    """One playable scenario.

    Either ``setting`` and ``player`` (the engine writes the system prompt around them), a
    ``character`` the model plays, or a free-form ``system_prompt`` must be given (a
    ``system_prompt`` may come with a ``character``). Either way the rendered prompt ends with
    the rule that every reply ends with ``choices`` bulleted options.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    title: ShortText
    description: Annotated[SafeText, Field(min_length=1, max_length=1000)]
    tags: list[Annotated[str, Field(min_length=1, max_length=30)]] = Field(
        default_factory=list, max_length=12
    )
    author: ShortText | None = None
    setting: LongText | None = None
    player: LongText | None = None
    style: LongText | None = None
    system_prompt: LongText | None = None
    opening: Annotated[SafeText, Field(min_length=1, max_length=2000)] = "Start!"
    intro: Intro | None = None
    player_name: ShortText | None = None
    character: Character | None = None
    choices: Annotated[int, Field(ge=2, le=6)] = 3
    choice_mode: Literal["guided", "free"] = "guided"
    sampling: Sampling = Field(default_factory=Sampling)
    lore: list[LoreEntry] = Field(default_factory=list, max_length=200)
    lore_budget: Annotated[int, Field(ge=0, le=4096)] = 256
    # What the story must not forget (pinned after the system prompt), and the author's note
    # placed before each action: the player's to edit, these are their starting text.
    memory: Annotated[SafeText, Field(min_length=1, max_length=4000)] | None = None
    authors_note: Annotated[SafeText, Field(min_length=1, max_length=1000)] | None = None
    # Tokens the story-so-far summary may take once exchanges leave the window.
    summary_budget: Annotated[int, Field(ge=32, le=1024)] = 200

    @model_validator(mode="after")
    def _check_prompt_source(self) -> Scenario:
        written = self.system_prompt is not None or self.character is not None
        if not written and (self.setting is None or self.player is None):
            raise ValueError(
                "give either 'system_prompt', 'character', or both 'setting' and 'player'"
            )
        if written and (self.setting or self.player or self.style):
            raise ValueError(
                "'system_prompt' and 'character' replace 'setting', 'player' and 'style'; "
                "use one way"
            )
        return self


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
DEFAULT_STYLE = (
    "Narrate in the second person and present tense, in vivid but brief prose: one to three short "
    "paragraphs a turn. Never act or speak for the player."
)


def choices_rule(count: int) -> str:
    """The sentence that asks the model for its option block (the model card's wording, firmer)."""
    word = _NUMBER_WORDS[count]
    return (
        f"Describe the scenario to the user and give them {word} options to pick from on each "
        f"turn. End every reply with exactly {word} options as a bulleted list, one option per "
        'line, each line starting with "- ".'
    )


def _character_parts(scenario: Scenario, character: Character) -> list[str]:
    name = character.name
    player = scenario.player_name or "the player"
    lead = scenario.system_prompt or (
        f"This is an interactive story: {scenario.title}. You play {name} and narrate the "
        f"scene around them; the user plays {player}. Never act or speak for {player}."
    )
    fields = [
        (f"{name}", character.description),
        (f"{name}'s personality", character.personality),
        ("The scenario", character.scenario),
    ]
    return [lead, *(f"{label}: {text}" for label, text in fields if text)]


def _player_name_line(scenario: Scenario) -> list[str]:
    if scenario.player_name is None:
        return []
    return [f"The player's name is {scenario.player_name}."]


def render_system_prompt(scenario: Scenario) -> str:
    """The system prompt a scenario becomes."""
    rule = choices_rule(scenario.choices)
    constant = [entry.text for entry in scenario.lore if entry.constant and entry.enabled]
    character = scenario.character
    if character is not None:
        example = character.example_dialogue
        parts = [
            *_character_parts(scenario, character),
            *constant,
            *([f"Example dialogue:\n{example}"] if example else []),
            *_player_name_line(scenario),
            *([character.post_history] if character.post_history else []),
            rule,
        ]
        return "\n\n".join(parts)
    if scenario.system_prompt is not None:
        return "\n\n".join([scenario.system_prompt, *constant, *_player_name_line(scenario), rule])
    parts = [
        f"This is a text adventure game: {scenario.title}.",
        f"The world: {scenario.setting}",
        *constant,
        f"The player: {scenario.player}",
        *_player_name_line(scenario),
        f"Narration: {scenario.style or DEFAULT_STYLE}",
        rule,
    ]
    return "\n\n".join(parts)


def _field_name(loc: tuple[Any, ...]) -> str:
    name = ".".join(str(part) for part in loc)
    return name or "scenario"


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    message = str(error["msg"])
    # pydantic prefixes messages from validators with "Value error, ".
    return re.sub(r"^Value error, ", "", message)


def scenario_from_document(document: YamlDocument) -> Scenario:
    """Validate loaded YAML as a scenario.

    Raises:
        YamlLoadError: with one problem per invalid field, each with its line.
    """
    if not isinstance(document.data, dict):
        kind = type(document.data).__name__
        problem = Problem(document.path, 1, "scenario", f"top level must be a mapping, not {kind}")
        raise YamlLoadError([problem])
    try:
        return Scenario.model_validate(document.data)
    except ValidationError as exc:
        raise YamlLoadError(validation_problems(document, exc)) from None


def validation_problems(
    document: YamlDocument, error: ValidationError, top: str = "scenario"
) -> list[Problem]:
    """One problem per validation error, each with the line of its field."""
    return [
        Problem(
            document.path,
            document.line_of(item["loc"]),
            _field_name(item["loc"]) if item["loc"] else top,
            _message(item),
        )
        for item in error.errors()
    ]


def load_scenario(path: Path) -> Scenario:
    """Load and validate one scenario file.

    Raises:
        YamlLoadError: listing every problem found, each with file and line.
    """
    return scenario_from_document(load_yaml_file(path))
