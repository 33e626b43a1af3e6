"""The choice parser: the shapes models really write, and that it never raises."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from game.choices import MAX_CHOICES, parse_reply, resolve_action

THREE = ["Go inside the house.", "Ignore the call and move away.", "Run as fast as you can."]
STORY = "You stand before an old house."

CASES = [
    # (id, reply, expected narrative, expected choices)
    ("card bullets", f"{STORY}\n\n- {THREE[0]}\n- {THREE[1]}\n- {THREE[2]}", STORY, THREE),
    ("unicode bullet", f"{STORY}\n\n  • {THREE[0]}\n  • {THREE[1]}\n  • {THREE[2]}", STORY, THREE),
    ("asterisk", f"{STORY}\n* {THREE[0]}\n* {THREE[1]}\n* {THREE[2]}", STORY, THREE),
    ("en dash", f"{STORY}\n– {THREE[0]}\n– {THREE[1]}\n– {THREE[2]}", STORY, THREE),
    ("numbered dot", f"{STORY}\n1. {THREE[0]}\n2. {THREE[1]}\n3. {THREE[2]}", STORY, THREE),
    ("numbered paren", f"{STORY}\n1) {THREE[0]}\n2) {THREE[1]}\n3) {THREE[2]}", STORY, THREE),
    ("parenthesised", f"{STORY}\n(1) {THREE[0]}\n(2) {THREE[1]}\n(3) {THREE[2]}", STORY, THREE),
    ("letters", f"{STORY}\na) {THREE[0]}\nb) {THREE[1]}\nc) {THREE[2]}", STORY, THREE),
    ("upper letters", f"{STORY}\nA. {THREE[0]}\nB. {THREE[1]}\nC. {THREE[2]}", STORY, THREE),
    ("tabs", f"{STORY}\n-\t{THREE[0]}\n-\t{THREE[1]}\n-\t{THREE[2]}", STORY, THREE),
    (
        "blank lines between",
        f"{STORY}\n\n- {THREE[0]}\n\n- {THREE[1]}\n\n- {THREE[2]}\n",
        STORY,
        THREE,
    ),
    (
        "bold options",
        f"{STORY}\n- **Go inside the house.**\n- __Ignore the call and move away.__\n- *Run as fast as you can.*",
        STORY,
        THREE,
    ),
    (
        "bold inside",
        f"{STORY}\n- Go **inside** the house.\n- Ignore the call and move away.\n- Run as `fast` as you can.",
        STORY,
        ["Go inside the house.", "Ignore the call and move away.", "Run as fast as you can."],
    ),
    (
        "wrapped indented",
        f"{STORY}\n- Go inside the\n  house.\n- Ignore the call and move away.\n- Run as fast as you can.",
        STORY,
        THREE,
    ),
    (
        "wrapped lowercase",
        f"{STORY}\n- Go inside the\nhouse.\n- Ignore the call and move away.\n- Run as fast as you can.",
        STORY,
        THREE,
    ),
    (
        "text after block",
        f"{STORY}\n- {THREE[0]}\n- {THREE[1]}\n- {THREE[2]}\nWhat do you do?",
        f"{STORY}\n\nWhat do you do?",
        THREE,
    ),
    (
        "text after blank",
        f"{STORY}\n- {THREE[0]}\n- {THREE[1]}\n- {THREE[2]}\n\nChoose wisely.",
        f"{STORY}\n\nChoose wisely.",
        THREE,
    ),
    (
        "heading dropped",
        f"{STORY}\n\nYour options:\n- {THREE[0]}\n- {THREE[1]}\n- {THREE[2]}",
        STORY,
        THREE,
    ),
    (
        "bold heading dropped",
        f"{STORY}\n\n**What will you do:**\n1. {THREE[0]}\n2. {THREE[1]}\n3. {THREE[2]}",
        STORY,
        THREE,
    ),
    ("two options", f"{STORY}\n- Fight.\n- Flee.", STORY, ["Fight.", "Flee."]),
    (
        "six options",
        STORY + "\n" + "\n".join(f"- Option {i}." for i in range(6)),
        STORY,
        [f"Option {i}." for i in range(6)],
    ),
    ("seven is too many", STORY + "\n" + "\n".join(f"- Option {i}." for i in range(7)), None, []),
    ("one is too few", f"{STORY}\n- Go inside the house.", None, []),
    ("no block", "You wait. Nothing happens. The wind rises.", None, []),
    ("empty reply", "", "", []),
    (
        "last block wins",
        f"Earlier you saw:\n- a door\n- a key\n\n{STORY}\n\n1. {THREE[0]}\n2. {THREE[1]}\n3. {THREE[2]}",
        f"Earlier you saw:\n- a door\n- a key\n\n{STORY}",
        THREE,
    ),
    (
        "kind change splits blocks",
        f"{STORY}\n- a door\n- a key\n1. {THREE[0]}\n2. {THREE[1]}\n3. {THREE[2]}",
        f"{STORY}\n- a door\n- a key",
        THREE,
    ),
    ("only options", f"- {THREE[0]}\n- {THREE[1]}\n- {THREE[2]}", "", THREE),
    ("crlf", f"{STORY}\r\n\r\n- {THREE[0]}\r\n- {THREE[1]}\r\n- {THREE[2]}", STORY, THREE),
    (
        "horizontal rule not an item",
        f"{STORY}\n---\n- {THREE[0]}\n- {THREE[1]}\n- {THREE[2]}",
        f"{STORY}\n---",
        THREE,
    ),
    (
        "dialogue dash kept in narrative",
        "—Who's there? she asks.\n\n- Answer her.\n- Stay silent.\n- Run.",
        "—Who's there? she asks.",
        ["Answer her.", "Stay silent.", "Run."],
    ),
    (
        "unicode text",
        "Der Wind heult.\n- Öffne die Tür.\n- Lauf weg.\n- Schrei „Hallo“.",
        "Der Wind heult.",
        ["Öffne die Tür.", "Lauf weg.", "Schrei „Hallo“."],
    ),
    (
        "scene break ignored",
        f"{STORY}\n\n* * *\n\n- {THREE[0]}\n- {THREE[1]}\n- {THREE[2]}",
        None,
        THREE,
    ),
]


@pytest.mark.parametrize(
    ("reply", "narrative", "choices"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_parse_reply(reply, narrative, choices):
    parsed = parse_reply(reply)
    assert parsed.choices == choices
    if narrative is None:
        if not choices:
            assert parsed.narrative == reply.strip()
    else:
        assert parsed.narrative == narrative


def test_enough_cases():
    assert len(CASES) >= 25


@given(st.text())
def test_never_raises_on_any_text(text):
    parsed = parse_reply(text)
    assert isinstance(parsed.narrative, str)
    assert len(parsed.choices) == 0 or 2 <= len(parsed.choices) <= MAX_CHOICES
    assert all(choice.strip() == choice and choice for choice in parsed.choices)


line = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.builds(
        lambda m, t: f"{m} {t}",
        st.sampled_from(["-", "*", "•", "1.", "2)", "a)", "(3)"]),
        st.text(max_size=30),
    ),
)


@given(st.lists(line, max_size=12))
def test_never_raises_on_list_shaped_text(lines):
    parsed = parse_reply("\n".join(lines))
    assert len(parsed.choices) <= MAX_CHOICES


@given(
    st.lists(
        st.text(alphabet="abcdefgh ijkl.,!?'", min_size=1, max_size=30).map(str.strip).filter(bool),
        min_size=2,
        max_size=6,
    )
)
def test_options_round_trip(options):
    reply = "The story.\n\n" + "\n".join(f"- {option}" for option in options)
    parsed = parse_reply(reply)
    assert parsed.choices == [" ".join(option.split()) for option in options]
    assert parsed.narrative == "The story."


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1", "Go"),
        (" 3 ", "Hide"),
        ("4", "4"),
        ("0", "0"),
        ("open the door", "open the door"),
        ("002", "Run"),
        ("١", "Go"),  # an Arabic-Indic 1
        # Digits to str.isdigit() that int() refuses: played as typed, never a crash.
        ("²", "²"),
        ("7" * 5000, "7" * 5000),
    ],
)
def test_resolve_action(typed, expected):
    assert resolve_action(typed, ["Go", "Run", "Hide"]) == expected


# The list forms LLaMA-family chat models write (Metharme, Pygmalion-2, LLaMA-2-chat) beyond
# "-", "*" and "1.": labelled options, bold labels, keycaps, brackets, colons, dashes, "> ".
LLAMA_FAMILY_BLOCKS = {
    "option-number": "Option 1: Go north.\nOption 2: Go south.\nOption 3: Wait.",
    "bold-option-letter": "**Option A:** Go north.\n**Option B:** Go south.\n**Option C:** Wait.",
    "choice-dash": "Choice 1 - Go north.\nChoice 2 - Go south.\nChoice 3 - Wait.",
    "keycap": "1️⃣ Go north.\n2️⃣ Go south.\n3️⃣ Wait.",
    "brackets": "[1] Go north.\n[2] Go south.\n[3] Wait.",
    "number-colon": "1: Go north.\n2: Go south.\n3: Wait.",
    "number-dash": "1 - Go north.\n2 - Go south.\n3 - Wait.",
    "letter-colon": "A: Go north.\nB: Go south.\nC: Wait.",
    "prompt": "> Go north.\n> Go south.\n> Wait.",
    "plus": "+ Go north.\n+ Go south.\n+ Wait.",
}


@pytest.mark.parametrize("block", LLAMA_FAMILY_BLOCKS.values(), ids=LLAMA_FAMILY_BLOCKS.keys())
def test_llama_family_option_forms_are_read(block):
    parsed = parse_reply(f"The hall is dark.\n\nWhat do you do?\n\n{block}")
    assert parsed.choices == ["Go north.", "Go south.", "Wait."]
    assert parsed.narrative.startswith("The hall is dark.")
    assert "Go north" not in parsed.narrative


@pytest.mark.parametrize(
    "text",
    ["It was 1 - 0 at half time.\nA sad day.", "Option 1 is gone.\nOption 2 too.", "> Quote."],
)
def test_prose_that_looks_a_little_like_a_list_is_narrative(text):
    assert parse_reply(text).choices == []
