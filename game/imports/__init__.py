"""Imports of the content players already have (character cards, lorebooks, KoboldAI Lite
stories) into packs, and the export of a scenario as a character card. Plain Python: no
Textual, no llama_cpp."""

from game.imports.bounded import ImportFailed
from game.imports.sources import DEFAULT_PLAYER_NAME, Imported, read_source
from game.imports.writer import ImportResult, import_files

__all__ = [
    "DEFAULT_PLAYER_NAME",
    "ImportFailed",
    "ImportResult",
    "Imported",
    "import_files",
    "read_source",
]
