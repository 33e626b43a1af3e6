"""The command line: ``python -m game [play|resume|saves|validate|scenarios|packs|bench]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from game import serve
from game.backends.base import BackendError
from game.backends.remote_cli import remote_bench_options, remote_options, remote_overrides
from game.bench import recall
from game.bench.table import format_table
from game.catalog import (
    builtin_catalog,
    entries,
    find_entry,
    load_catalog,
    user_packs_dir,
)
from game.config import (
    ConfigError,
    Settings,
    load_settings,
    resolve_model_path,
    resolve_saves_dir,
)
from game.controller import Explicit, GameBusyError, GameController
from game.imports import commands as imports
from game.logs import setup_logging
from game.packs import SCENARIO_SUFFIXES, Catalog, PackError, is_pack, load_pack
from game.prompt import FORMATS, UnknownFormatError
from game.saves import SaveError, SaveFolder, SaveNameError, check_save_name
from game.scenario import load_scenario
from game.session import SessionError
from game.textsafety import SafeWriter, clean_input, for_terminal
from game.yamlsource import Problem, YamlLoadError

if TYPE_CHECKING:
    from game.models import BackendFactory
    from game.tui.app import AdventureApp
    from game.tui.browser import BrowserMode

log = logging.getLogger(__name__)

# Errors whose message is already one line meant for the player.
PLAYER_ERRORS = (
    BackendError,
    ConfigError,
    GameBusyError,
    SaveError,
    SaveNameError,
    SessionError,
    UnknownFormatError,
)


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", type=Path, help="a GGUF model file (default: the embedded one)")
    group.add_argument("--n-ctx", type=int, help="context window in tokens (default 2048)")
    group.add_argument(
        "--n-gpu-layers",
        type=int,
        help="layers to offload to the GPU (-1: all; default: all "
        "when llama.cpp was built with GPU support, else 0)",
    )
    group.add_argument(
        "--threads", type=int, help="CPU threads for generation (default: the physical cores)"
    )
    group.add_argument(
        "--threads-batch",
        type=int,
        help="CPU threads for reading the prompt (default: every logical CPU)",
    )
    group.add_argument(
        "--no-kv-store",
        action="store_true",
        help="do not keep games' KV caches on disk (see the README)",
    )
    group.add_argument(
        "--format",
        choices=sorted(FORMATS),
        help="prompt format (default: from the model's chat template, else metharme)",
    )
    group.add_argument(
        "--choices",
        choices=["guided", "free"],
        help="guided: a grammar makes every reply end with its options; free: parse what comes "
        "(default: the scenario's, guided unless it says otherwise)",
    )
    group.add_argument("--seed", type=int, help="sampling seed, for a reproducible game")
    group.add_argument("--temperature", type=float, help="sampling temperature")
    group.add_argument("--max-tokens", type=int, help="the most tokens a reply may have")
    remote_options(parser)


def _int_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _pack_option(parser: argparse.ArgumentParser, dest: str = "packs") -> None:
    parser.add_argument(
        "--pack",
        action="append",
        type=Path,
        dest=dest,
        metavar="PATH",
        help="also load this pack (a folder or .zip); repeatable",
    )


def _play_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--headless", action="store_true", help="play in the plain terminal")
    parser.add_argument("--json", action="store_true", help="with --headless: one JSON per turn")
    parser.add_argument("--saves", type=Path, metavar="DIR", help="the save folder")
    parser.add_argument("--no-save", action="store_true", help="do not save the game")
    parser.add_argument(
        "--no-summaries",
        action="store_true",
        help="new games: the model writes no story-so-far summary as turns leave the window "
        "(in the game: /summary on|off)",
    )
    _model_options(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m game", description="A local AI text adventure on llama.cpp."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log everything to stderr")
    parser.add_argument("--log-file", type=Path, help="where to write the log")
    _pack_option(parser, dest="top_packs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    play = commands.add_parser("play", help="play a scenario")
    play.add_argument(
        "--scenario",
        help="pack/scenario, a scenario id, or a scenario file (default haunted-house)",
    )
    _pack_option(play)
    play.add_argument("--name", help="the save's name (default: scenario and time)")
    _play_options(play)

    resume = commands.add_parser("resume", help="go on with a saved game")
    resume.add_argument("save", metavar="FILE_OR_NAME", help="a save file, or a save's name")
    _pack_option(resume)
    _play_options(resume)

    saves = commands.add_parser("saves", help="list saved games, newest first")
    saves.add_argument("--saves", type=Path, metavar="DIR", help="the save folder")

    validate = commands.add_parser("validate", help="check scenario files and packs")
    validate.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="scenario files, folders of them, or packs (a folder with pack.yaml, or a .zip)",
    )

    scenarios = commands.add_parser("scenarios", help="list every scenario of every pack")
    _pack_option(scenarios)
    packs = commands.add_parser("packs", help="list the packs found and their scenarios")
    _pack_option(packs)

    bench = commands.add_parser("bench", help="measure the engine on a model (prints a table)")
    bench.add_argument(
        "which",
        nargs="?",
        choices=["context", "choices", "speed", "recall"],
        default="context",
        help="context (default): prompt tokens evaluated and time to first token with and "
        "without KV-cache reuse, and with memory on; choices: the share of replies that end "
        "with N distinct options; speed: the engine beside llama-bench, per-token overhead, "
        "resumed-game ttft; recall: facts planted early and asked for after the window slid, "
        "with memory on and off",
    )
    bench.add_argument("--quick", action="store_true", help="speed: a short run (for tests)")
    bench.add_argument("--llama-bench", type=Path, metavar="PATH", help="speed: llama-bench")
    bench.add_argument(
        "--turns",
        type=_int_between(1, 10_000),
        help="turns (context: default 40), turns per scenario (choices: 10), or the most "
        "filler turns (recall: 40)",
    )
    bench.add_argument(
        "--reply-tokens",
        type=_int_between(16, 4096),
        help="context: the fixed reply length (16 to 4096; default 32); recall: the longest "
        "reply (default 48)",
    )
    bench.add_argument(
        "--scenario", help="context, recall: the scenario to play (default haunted-house)"
    )
    bench.add_argument(
        "--facts",
        type=_int_between(1, len(recall.FACTS)),
        default=len(recall.FACTS),
        help=f"recall: how many facts to plant (1 to {len(recall.FACTS)}; default all)",
    )
    bench.add_argument(
        "--slides",
        type=_int_between(0, 100),
        default=3,
        help="recall: the window slides before the questions, at least (default 3)",
    )
    bench.add_argument(
        "--memory-text",
        action="store_true",
        help="recall: a third run with the facts in the player's memory instead",
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _model_options(bench)
    imports.add_commands(commands)
    serve.add_commands(commands, model_options=_model_options, pack_option=_pack_option)
    return parser


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings this command line gives, for the top layer of :func:`load_settings`."""
    values = {
        "model_path": getattr(args, "model", None),
        "n_ctx": getattr(args, "n_ctx", None),
        "n_gpu_layers": getattr(args, "n_gpu_layers", None),
        "n_threads": getattr(args, "threads", None),
        "n_threads_batch": getattr(args, "threads_batch", None),
        "kv_store_mb": 0 if getattr(args, "no_kv_store", False) else None,
        "seed": getattr(args, "seed", None),
        "prompt_format": getattr(args, "format", None),
        "choice_mode": getattr(args, "choices", None),
        "saves_dir": getattr(args, "saves", None),
        "summaries": False if getattr(args, "no_summaries", False) else None,
        **remote_overrides(args),
    }
    overrides: dict[str, Any] = {key: value for key, value in values.items() if value is not None}
    sampling = {
        "temperature": getattr(args, "temperature", None),
        "max_tokens": getattr(args, "max_tokens", None),
    }
    sampling = {key: value for key, value in sampling.items() if value is not None}
    if sampling:
        overrides["sampling"] = sampling
    return overrides


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings in force: defaults < config file < environment < this command line."""
    return load_settings(overrides=cli_overrides(args))


def _one(value: object) -> str:
    """Text from a pack or a save, shown on one line with escapes visible (issue 11)."""
    return for_terminal(str(value), one_line=True)


def _catalog(args: argparse.Namespace) -> Catalog:
    """The packs of every source, with the ``--pack`` paths given (before or after the command).
    What is wrong with a ``--pack`` the player named is said on stderr, never dropped."""
    extra = [*(getattr(args, "top_packs", None) or []), *(getattr(args, "packs", None) or [])]
    catalog = load_catalog(extra)
    if args.command != "packs":  # `packs` lists every problem itself
        for problem in catalog.problems_under(extra):
            print(f"warning: {problem}", file=sys.stderr)
    return catalog


def _validate_path(path: Path) -> tuple[int, list[str]]:
    """Check a scenario file, a folder of them, or a pack; return (files checked, problems)."""
    try:
        path.is_dir()
    except OSError as exc:  # a name the OS refuses (too long): one line, like any bad file
        return 1, [str(Problem(str(path), 1, "file", exc.strerror or str(exc)))]
    if is_pack(path):
        try:
            pack = load_pack(path)
        except PackError as exc:
            return 1, [str(problem) for problem in exc.problems]
        return len(pack.scenarios) + 1, [str(problem) for problem in pack.problems]
    if path.is_dir():
        checked, problems = 0, []
        for child in sorted(path.iterdir()):
            # A link to a folder is not followed: a link loop would recurse for ever.
            if (child.is_dir() and not child.is_symlink()) or child.suffix in SCENARIO_SUFFIXES:
                count, found = _validate_path(child)
                checked, problems = checked + count, problems + found
        return checked, problems
    try:
        load_scenario(path)
    except YamlLoadError as exc:
        return 1, [str(problem) for problem in exc.problems]
    return 1, []


def cmd_validate(paths: Sequence[Path]) -> int:
    checked = 0
    problems: list[str] = []
    for path in paths:
        count, found = _validate_path(path)
        checked += count
        problems += found
    for problem in problems:
        print(problem)
    if not checked:
        print("no scenario files found", file=sys.stderr)
        return 1
    print(f"{checked} file(s) checked, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    for entry in entries(_catalog(args)):
        tags = _one(", ".join(entry.scenario.tags))
        title = _one(entry.scenario.title)
        print(f"{entry.pack_id}/{entry.scenario.id:20} {title}  [{tags}]")
    return 0


def cmd_packs(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    for pack in catalog.packs.values():
        manifest = pack.manifest
        print(
            _one(
                f"{pack.id}  {manifest.title} {manifest.version} by {manifest.author} "
                f"({manifest.license}; {pack.source}: {pack.location})"
            )
        )
        for scenario_id, item in sorted(pack.scenarios.items()):
            print(f"    {pack.id}/{scenario_id:20} {_one(item.scenario.title)}")
    for problem in catalog.problems:
        print(f"problem: {problem}")
    if not catalog.packs:
        print("no packs found", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from game.bench import choices, context
    from game.runtime import choose_format, open_backend

    settings = settings_from_args(args)
    seed = settings.seed if settings.seed is not None else 1
    if args.which == "speed":
        from game.bench import speed

        probe = open_backend(settings.model_copy(update={"n_ctx": 256, "kv_store_mb": 0}))
        fmt = choose_format(settings, probe)
        probe.close()  # type: ignore[attr-defined]
        result = speed.run(
            resolve_model_path(settings),
            find_entry(args.scenario, builtin_catalog()).scenario,
            fmt,
            quick=args.quick,
            n_gpu_layers=settings.n_gpu_layers,
            n_threads=settings.n_threads,
            n_threads_batch=settings.n_threads_batch,
            llama_bench_path=args.llama_bench,
        )
        print(json.dumps(result, indent=2) if args.json else speed.render(result))
        return 0
    if args.which == "recall":
        return _bench_recall(args, settings, seed)
    if args.which == "choices":
        scenarios = [entry.scenario for entry in entries(builtin_catalog())]
        backend = open_backend(settings)
        result = choices.run(
            backend,
            choose_format(settings, backend),
            scenarios,
            turns=args.turns or 10,
            seed=seed,
            max_tokens=settings.sampling.max_tokens or 200,
        )
        print(json.dumps(result, indent=2) if args.json else choices.render(result))
        return 0
    # The context bench loads a fresh model for each strategy; this one only picks the format.
    probe = open_backend(settings.model_copy(update={"n_ctx": 256}))
    fmt = choose_format(settings, probe)
    probe.close()
    remote = remote_bench_options(settings, args.n_ctx or 1024)
    result = context.run(
        Path(probe.name) if remote else resolve_model_path(settings),
        find_entry(args.scenario, builtin_catalog()).scenario,
        fmt,
        turns=args.turns or 40,
        n_ctx=args.n_ctx or 1024,
        reply_tokens=args.reply_tokens or 32,
        seed=seed,
        n_gpu_layers=settings.n_gpu_layers,
        n_threads=settings.n_threads,
        **remote,
    )
    print(json.dumps(result, indent=2) if args.json else context.render(result))
    return 0


def _bench_recall(args: argparse.Namespace, settings: Settings, seed: int) -> int:
    import json

    from game.config import embedded_model_path
    from game.runtime import choose_format, open_backend

    # A fresh model for each run, at the benchmark's small context, no stored caches.
    settings = settings.model_copy(update={"n_ctx": args.n_ctx or 1024, "kv_store_mb": 0})
    probe = open_backend(settings)
    fmt = choose_format(settings, probe)
    name = probe.name
    probe.close()  # type: ignore[attr-defined]
    small = not settings.server_url and resolve_model_path(settings) == embedded_model_path()
    result = recall.run(
        lambda: open_backend(settings),
        find_entry(args.scenario, builtin_catalog()).scenario,
        fmt,
        model_name=name,
        small_model=small,
        facts=args.facts,
        reply_tokens=args.reply_tokens or 48,
        seed=seed,
        min_slides=args.slides,
        max_filler=args.turns or 40,
        memory_text=args.memory_text,
    )
    print(json.dumps(result, indent=2) if args.json else recall.render(result))
    return 0


def cmd_saves(args: argparse.Namespace) -> int:
    folder = SaveFolder(resolve_saves_dir(settings_from_args(args)))
    entries = folder.listing()
    if not entries:
        print(f"no saves in {folder.folder}", file=sys.stderr)
        return 0
    rows = []
    for entry in entries:
        if entry.save is None:
            rows.append([_one(entry.path.name), f"UNREADABLE: {_one(entry.problem)}", "", "", ""])
            continue
        save = entry.save
        played = save.updated_at.astimezone().strftime("%Y-%m-%d %H:%M")
        rows.append(
            [
                _one(save.name),
                _one(save.scenario.title),
                save.turn_count,
                played,
                _one(entry.path.name),
            ]
        )
    print(format_table(["name", "scenario", "turns", "last played", "file"], rows))
    return 0


def _run_headless(args: argparse.Namespace, game: GameController) -> int:
    from game.headless import HeadlessGame

    def read_line() -> str | None:
        line = sys.stdin.readline()
        # Binary bytes arrive as lone surrogates, escapes as control characters: neither may
        # reach the story, the save or the terminal.
        return clean_input(line) if line else None

    try:
        return HeadlessGame(
            game,
            read_line=read_line,
            out=SafeWriter(sys.stdout),
            err=SafeWriter(sys.stderr),
            json_mode=args.json,
            stream=sys.stdout.isatty(),
            progress=sys.stderr.isatty(),
            # A person types while the model summarizes; a script's lines are there at once,
            # so its summaries are written before the next line is read (see game.headless).
            background="thread" if sys.stdin.isatty() else "wait",
        ).run()
    finally:
        problem = game.close()
        if problem:
            print(f"warning: the game was not saved: {problem}", file=sys.stderr)


def tui_app(
    args: argparse.Namespace,
    backend_factory: BackendFactory | None = None,
    browser: BrowserMode | None = None,
) -> AdventureApp:
    """The TUI app for a ``play``, ``resume`` or bare command line, built exactly as the game
    builds it (tests call this too, with a scripted ``backend_factory``).

    Raises:
        ConfigError, SaveError, SaveNameError, YamlLoadError: one line, before anything starts.
    """
    from game.tui.app import StartAt, create_app

    settings = settings_from_args(args)
    overrides = cli_overrides(args)
    catalog = _catalog(args)
    start = None
    if args.command == "play":
        if args.name is not None:
            check_save_name(args.name)
        start = StartAt(
            entry=find_entry(args.scenario, catalog), name=args.name, saving=not args.no_save
        )
    elif args.command == "resume":
        path = SaveFolder(resolve_saves_dir(settings)).find(args.save)
        start = StartAt(save=path, saving=not args.no_save)
    return create_app(
        settings,
        entries(catalog),
        start=start,
        overrides=overrides,
        backend_factory=backend_factory,
        browser=browser,
    )


def run_tui(args: argparse.Namespace) -> int:
    app = tui_app(args)
    app.run()
    return app.return_code or 0


def cmd_play(args: argparse.Namespace) -> int:
    from game.models import ModelHost
    from game.runtime import open_backend

    if not args.headless:
        return run_tui(args)
    settings = settings_from_args(args)
    entry = find_entry(args.scenario, _catalog(args))
    if args.name is not None:
        check_save_name(args.name)
    if not args.json:
        print("Loading the model...", file=sys.stderr, flush=True)
    game = GameController.new_game(
        settings, entry, ModelHost(open_backend), name=args.name, saving=not args.no_save
    )
    return _run_headless(args, game)


def cmd_resume(args: argparse.Namespace) -> int:
    from game.models import ModelHost
    from game.runtime import open_backend

    if not args.headless:
        return run_tui(args)
    settings = settings_from_args(args)
    path = SaveFolder(resolve_saves_dir(settings)).find(args.save)
    game = GameController.resume(
        settings,
        path,
        ModelHost(open_backend),
        explicit=Explicit.from_overrides(cli_overrides(args)),
        saving=not args.no_save,
    )
    return _run_headless(args, game)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": lambda args: cmd_validate(args.paths),
    "scenarios": cmd_scenarios,
    "packs": cmd_packs,
    "play": cmd_play,
    "resume": cmd_resume,
    "saves": cmd_saves,
    "bench": cmd_bench,
    "import": lambda args: imports.cmd_import(args, user_packs_dir()),
    "export": lambda args: imports.cmd_export(
        args, lambda ref: find_entry(ref, _catalog(args)).scenario
    ),
    "serve": serve.cmd_serve,
    "browser-tab": serve.cmd_browser_tab,
}

# Commands that print to the terminal (the others run the TUI, which owns it).
CONSOLE_COMMANDS = ("validate", "scenarios", "packs", "saves", "bench", "serve", *imports.COMMANDS)


def _run(args: argparse.Namespace) -> int:
    return COMMANDS.get(args.command, run_tui)(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    headless = args.command in CONSOLE_COMMANDS or getattr(args, "headless", False)
    log_file = setup_logging(verbose=args.verbose, log_file=args.log_file, console=headless)
    try:
        status = _run(args)
        # Flushed here, not at exit: a reader that went away is handled below, quietly.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be said, and that is no error.
        _silence_stdout()
        return 0
    except PLAYER_ERRORS as exc:
        print(f"error: {_one(exc)}", file=sys.stderr)
        return 2
    except YamlLoadError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:
        log.exception("unexpected error")
        where = f"; details in {log_file}" if log_file else ""
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        print(_one(f"internal error: {type(exc).__name__}: {first_line}{where}"), file=sys.stderr)
        return 70


def tui_app_for(argv: Sequence[str], backend_factory: BackendFactory | None = None) -> AdventureApp:
    """:func:`tui_app` for a command line given as a list of words."""
    return tui_app(build_parser().parse_args(argv), backend_factory)
