"""``python -m game import`` and ``export``: registered by :mod:`game.cli` in a few lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from game.imports.bounded import ImportFailed
from game.imports.export import export_card
from game.imports.sources import DEFAULT_PLAYER_NAME
from game.imports.writer import import_files

COMMANDS = ("import", "export")


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``import`` and ``export``."""
    imp = commands.add_parser(
        "import",
        help="turn character cards, lorebooks and KoboldAI Lite stories into a pack",
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument(
        "--into",
        type=Path,
        metavar="PACK",
        help="the pack folder to write (default: a new folder in your packs folder)",
    )
    imp.add_argument(
        "--player-name",
        default=DEFAULT_PLAYER_NAME,
        help=f"the player's name for {{{{user}}}} (default {DEFAULT_PLAYER_NAME})",
    )
    exp = commands.add_parser("export", help="write a scenario as a character card V2")
    exp.add_argument("scenario", metavar="REF", help="pack/scenario, a scenario id, or a file")
    exp.add_argument(
        "--out",
        type=Path,
        action="append",
        metavar="FILE",
        help="FILE.png or FILE.json (repeatable; default ID.png and ID.json here)",
    )
    exp.add_argument("--force", action="store_true", help="overwrite existing files")


def cmd_import(args: argparse.Namespace, packs_dir: Path) -> int:
    try:
        result = import_files(
            args.files, args.into, packs_dir=packs_dir, player_name=args.player_name
        )
    except ImportFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in result.report.mapped:
        print(f"mapped: {line}")
    for line in result.report.dropped:
        print(f"dropped: {line}")
    ids = ", ".join(f"{result.pack_id}/{sid}" for sid in result.scenario_ids) or "none"
    print(f"wrote {result.pack} (scenarios: {ids})")
    return 0


def cmd_export(args: argparse.Namespace, scenario_for: object) -> int:
    scenario = scenario_for(args.scenario)  # type: ignore[operator]
    outs = args.out or [Path(f"{scenario.id}.png"), Path(f"{scenario.id}.json")]
    for out in outs:
        try:
            written = export_card(scenario, out, force=args.force)
        except (FileExistsError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {written}")
    return 0
